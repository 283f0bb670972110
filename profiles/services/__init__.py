"""Every write to profiles goes through a function here, one module per sub-domain:

- ``ingest``: the Segment-spec intake (events, identify, alias) into profiles, devices, events.
- ``identity``: resolving and merging profiles.
- ``keys``: write keys and REST API keys.
"""
