#!/usr/bin/env python3
"""An old-style dynamic inventory: no _meta, so each host's variables come from --host NAME."""
import json
import sys

GROUPS = {"web": {"hosts": ["w1", "w2"], "vars": {"http_port": 80}}, "all": {"vars": {"site": "old"}}}
HOSTS = {"w1": {"ansible_user": "legacy", "color": "red"}}

if sys.argv[1:] == ["--list"]:
    print(json.dumps(GROUPS))
elif sys.argv[1:2] == ["--host"]:
    print(json.dumps(HOSTS.get(sys.argv[2], {})))
else:
    sys.exit(2)
