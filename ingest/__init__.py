"""Camera registry and units; later the ONVIF client, stream readers and workers."""
