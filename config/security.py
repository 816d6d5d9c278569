"""Settings of what Lookout refuses: request sizes, sign-in throttling, where webhooks and
`file:` streams may go, who may scrape metrics, and where audit checkpoints are written.

They live under the `security:` key of the settings file (env `LOOKOUT_SECURITY__...`). The
defaults suit a county center on an isolated network; README "Security" explains each one.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MiB = 2**20


class SecuritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- request bodies ------------------------------------------------------------------------
    max_json_bytes: int = Field(1 * MiB, ge=1024, le=64 * MiB, description="largest JSON request body")
    max_upload_bytes: int = Field(
        512 * MiB, ge=1024, le=8 * 2**30, description="largest file upload (CSV import, evidence)")
    max_evidence_bytes: int = Field(20 * MiB, ge=1024, le=2**30, description="largest evidence file of an alert")

    # -- CSV import ----------------------------------------------------------------------------
    import_max_rows: int = Field(1_000_000, ge=1, le=10_000_000, description="rows one import may hold")
    import_errors_shown: int = Field(100, ge=0, le=10_000, description="row errors in the import's response")
    import_keep_days: int = Field(
        30, ge=1, le=3650, description="days an import's full error list stays readable (GET .../import/{id}/errors)")

    # -- sign-in -------------------------------------------------------------------------------
    login_free_failures: int = Field(5, ge=1, le=100, description="wrong passwords before delays start")
    login_max_delay_seconds: float = Field(
        900.0, ge=1, le=86_400, description="the longest wait between tries after repeated failures")
    login_hash_concurrency: int = Field(2, ge=1, le=64, description="password hashes computed at once")
    login_address_free_failures: int = Field(
        20, ge=1, le=10_000,
        description="wrong passwords from one client address (any usernames) before its delays start; "
                    "higher than per user because a center's consoles may share one address")
    password_min_length: int = Field(12, ge=8, le=128, description="shortest password a person may choose")

    # -- outbound connections --------------------------------------------------------------------
    webhook_allow_networks: list[str] = Field(
        default_factory=list,
        description="if set, webhooks may only reach these networks (CIDR); this machine, link-local and multicast "
                    "stay refused unless a network listed here lies inside them (127.0.0.1/32: a relay on this host)")
    webhook_deny_networks: list[str] = Field(
        default_factory=list, description="networks (CIDR) webhooks may never reach, besides loopback etc.")
    media_dirs: list[Path] = Field(
        default_factory=list,
        description="folders `file:` stream URLs may read from; default data_dir/media (and the demo's clips)")

    # -- operations ----------------------------------------------------------------------------
    metrics_token: SecretStr | None = Field(
        None, description="when set, GET /metrics needs `Authorization: Bearer <metrics_token>`")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"], description="Host header values the API answers (`*`: any)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For names the client (sign-in throttling "
                    "counts per client address); empty: the connection's own address, whatever headers say")

    # -- audit checkpoints -----------------------------------------------------------------------
    audit_checkpoint_dir: Path | None = Field(
        None, description="append-only folder for signed checkpoints of the audit chain's head; "
                          "default data_dir/audit-checkpoints")
    audit_checkpoint_key: SecretStr | None = Field(
        None, description="HMAC key of the checkpoints (not stored in the database); "
                          "default data_dir/audit-checkpoint.key")
    audit_checkpoint_seconds: float = Field(300.0, gt=0, le=86_400, description="how often a checkpoint is written")

    @field_validator("webhook_allow_networks", "webhook_deny_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network in CIDR form (10.0.0.0/8, fd00::/8)") from None
        return value
