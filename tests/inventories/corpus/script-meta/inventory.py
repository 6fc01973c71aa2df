#!/usr/bin/env python3
"""A dynamic inventory as a cloud or CMDB script writes one: --list with _meta."""
import json
import sys

INVENTORY = {
    "web": {"hosts": ["w1", "w2"], "vars": {"http_port": 80, "stack": {"name": "blue"}}},
    "db": ["d1"],
    "prod": {"children": ["web", "db"], "vars": {"env": "prod"}},
    "edge-box": {"region": "eu"},
    "_meta": {"hostvars": {"w1": {"ansible_host": "10.1.0.1", "ansible_user": "cloud"}, "d1": {"ansible_port": 2200}}},
}

if sys.argv[1:] == ["--list"]:
    print(json.dumps(INVENTORY))
elif sys.argv[1:2] == ["--host"]:
    print("{}")
else:
    sys.exit("usage: inventory.py --list | --host NAME")
