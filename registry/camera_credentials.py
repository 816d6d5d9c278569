"""Which credentials a camera keeps when it is written: they belong to the endpoints (stream
URLs' and ONVIF `host:port`) they were given for.

A write that moves an endpoint to another host or port drops them unless new ones come with
it; a URL that still holds a password (userinfo, query string, NVR path form) gives it up
here before it is stored. The API's PATCH, the CSV import and the start-up pass over rows of
older releases (`secure_stored_credentials`) all decide through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from config.errors import InvalidInput, LookoutError
from registry.cameras import Camera
from registry.credentials import CredentialCipher, Credentials, UrlForm, endpoint_of, onvif_endpoint, split_userinfo
from registry.fields import has_control_characters

URL_FIELDS = ("main_stream_url", "sub_stream_url")
ENDPOINT_FIELDS = (*URL_FIELDS, "onvif_host", "onvif_port")
CREDENTIALS_DROPPED = ("the stored credentials were removed because a stream URL or the ONVIF endpoint now "
                       "points at another host or port; send username and password for the new one")


def endpoints_of(values: Mapping[str, Any]) -> set[str]:
    """`host:port` of every place a camera's credentials may be sent: its stream URLs and
    its ONVIF endpoint."""
    found = {endpoint_of(values.get(name)) for name in URL_FIELDS}
    found.add(onvif_endpoint(values.get("onvif_host"), values.get("onvif_port")))
    return {endpoint for endpoint in found if endpoint}


def carried_forms(old: Credentials | None, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, UrlForm]:
    """The credential forms of `old` that still apply after a write: a URL whose path changed
    but whose endpoint did not keeps the form its predecessor had."""
    if old is None or not old.forms:
        return {}
    forms = {}
    for name in URL_FIELDS:
        was, now = before.get(name), after.get(name)
        if was and now and was in old.forms and endpoint_of(was) == endpoint_of(now):
            forms[now] = old.forms[was]
    return forms


def credentials_after(old: Credentials | None, before: Mapping[str, Any], after: Mapping[str, Any],
                      new: Credentials | None) -> tuple[Credentials | None, bool]:
    """The credentials a camera holds after a write, and whether the old ones were dropped.

    `before` / `after`: the camera's URL and ONVIF fields either side of the write; `new`:
    credentials that came with the write (their `forms` say where they sat in its URLs).
    New ones belong to every endpoint the camera has after the write. Old ones stay only while
    every endpoint stays one they were given for; legacy ones (sealed before endpoints were
    recorded) belong to the endpoints the camera had before the write."""
    endpoints = endpoints_of(after)
    if new is not None:
        forms = carried_forms(old, before, after)
        forms.update({url: form for url, form in new.forms.items() if url in after.values()})
        return new.bound(endpoints, forms), False
    if old is None:
        return None, False
    held = old.endpoints if old.endpoints is not None else frozenset(endpoints_of(before))
    if not endpoints <= held:
        return None, True
    return old.bound(held, carried_forms(old, before, after)), False


def take_credentials(values: dict[str, Any], explicit: Credentials | None) -> Credentials | None:
    """Take credentials out of the URLs in `values` (in place: userinfo, query string, NVR
    path form); the credentials that came with them, if any, with the forms they had.

    Explicit credentials win over ones embedded in a URL; the returned ones are not yet
    bound to endpoints (see `credentials_after`)."""
    found = explicit
    forms: dict[str, UrlForm] = {}
    for name in URL_FIELDS:
        url = values.get(name)
        if url:
            values[name], embedded = split_userinfo(url)
            if embedded is not None:
                if has_control_characters(embedded.username) or has_control_characters(embedded.password):
                    # percent-encoded in the URL: `adm%0D%0Ain` would forge a header line when sent
                    raise InvalidInput(f"{name}: the username or password in the URL holds control characters",
                                       field=name)
                forms.update(embedded.forms)
                found = found or embedded
    return found.bound((), forms) if found is not None else None


def sealed_after_write(cipher: CredentialCipher, camera: Camera, before: Mapping[str, Any],
                       values: Mapping[str, Any], given: Credentials | None) -> tuple[str | None, bool, bool]:
    """What a row update (the CSV import's) stores for `camera`'s credentials: (the sealed text,
    whether it changes, whether the old credentials were dropped). `before` is the camera as it
    was, `values` the fields the write sets, `given` credentials that came with it. Credentials
    sealed under another key are kept as they are unless the camera moves or new ones come."""
    was = {name: before[name] for name in ENDPOINT_FIELDS}
    now = {**was, **{k: v for k, v in values.items() if k in ENDPOINT_FIELDS}}

    def sealed(credentials: Credentials | None) -> str | None:
        return cipher.seal(credentials) if credentials else None

    try:
        old = cipher.open(camera.credentials_sealed, camera.id) if camera.credentials_sealed else None
    except LookoutError:
        if given is not None:
            return sealed(credentials_after(None, was, now, given)[0]), True, False
        moved = endpoints_of(now) != endpoints_of(was)
        return (None, True, True) if moved else (camera.credentials_sealed, False, False)
    if given is not None and old is not None and given == old and old.endpoints is not None:
        kept, _ = credentials_after(old, was, now, None)
        if kept is not None and all(old.forms.get(url) == form for url, form in given.forms.items()):
            return camera.credentials_sealed, False, False  # the same pair, for where it already belongs
    result, dropped = credentials_after(old, was, now, given)
    if result is None:
        return None, old is not None, dropped
    same_binding = old is not None and old.endpoints == result.endpoints and dict(old.forms) == dict(result.forms)
    if given is None and same_binding:
        return camera.credentials_sealed, False, False
    return sealed(result), True, dropped


def secure_stored_credentials(session: Session, cipher: CredentialCipher, batch: int = 500) -> int:
    """Bring rows stored before credentials were bound to endpoints up to date; the number of
    cameras changed. Idempotent; meant to run once at start after the upgrade.

    - credentials sealed without endpoints are re-sealed, bound to the endpoints their camera
      has now: from then on `join_userinfo` sends them nowhere else, whatever happens to the row;
    - credentials still inside a stored URL (userinfo, query string or NVR path form, stored
      before they were taken out) are taken out and sealed, so the API shows them no more.

    It cannot tell whether a URL was already pointed somewhere wrong before the upgrade: the
    README says to re-enter credentials of cameras whose URLs changed recently. Commits every
    `batch` cameras, so it never holds the write lock for long."""
    done, after = 0, 0
    suspicious = or_(*(column.like(pattern) for column in (Camera.main_stream_url, Camera.sub_stream_url)
                       for pattern in ("%@%", "%=%")))
    while True:
        rows = session.execute(
            select(Camera.id, Camera.credentials_sealed, Camera.main_stream_url, Camera.sub_stream_url,
                   Camera.onvif_host, Camera.onvif_port)
            .where(Camera.id > after, or_(Camera.credentials_sealed.is_not(None), suspicious))
            .order_by(Camera.id).limit(batch)
        ).all()
        if not rows:
            return done
        updates = []
        for camera_id, sealed, main, sub, host, port in rows:
            try:
                old = cipher.open(sealed, camera_id) if sealed else None
            except LookoutError:
                continue  # another key: nothing can be done here, the worker reports it
            where: dict[str, Any] = {"main_stream_url": main, "sub_stream_url": sub, "onvif_host": host,
                                     "onvif_port": port}
            embedded = take_credentials(where, None)
            if embedded is None and (old is None or old.endpoints is not None):
                continue
            pair = old or embedded
            assert pair is not None
            forms = {**(old.forms if old else {}), **(embedded.forms if embedded else {})}
            bound = Credentials(pair.username, pair.password).bound(endpoints_of(where), forms)
            updates.append({"id": camera_id, "main_stream_url": where["main_stream_url"],
                            "sub_stream_url": where["sub_stream_url"], "credentials_sealed": cipher.seal(bound)})
        if updates:
            session.execute(update(Camera), updates)
            done += len(updates)
        session.commit()
        after = rows[-1][0]
