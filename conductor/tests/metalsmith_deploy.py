# metalsmith's own Python API (what its Ansible role uses) against a Ferrite conductor:
# reserve a node by resource class (an allocation), provision it with an HTTP image and
# a hostname (metalsmith builds the config drive), wait for `active`, then unprovision.
# Run by conductor/tests/metalsmith.rs, which checks the conductor's side; this script
# prints one JSON line per phase. Argument: the cloud name in OS_CLIENT_CONFIG_FILE.
# metalsmith's CLI output needs Neutron (it lists the instance's IPs), hence the API.
import json
import sys

import metalsmith
import openstack
from metalsmith import sources

cloud = openstack.config.get_cloud_region(cloud=sys.argv[1])
p = metalsmith.Provisioner(cloud_region=cloud)
image = sources.HttpWholeDiskImage(
    "http://127.0.0.1:1/os.qcow2",
    checksum="sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
)
node = p.reserve_node("compute", hostname="web-1", traits=["CUSTOM_GOLD"])
print(json.dumps({"phase": "reserved", "node": node.id, "allocation": node.allocation_id}))
inst = p.provision_node(node, image, hostname="web-1", wait=120)
print(json.dumps({"phase": "active", "node": inst.node.id, "state": inst.state.value,
                  "hostname": inst.hostname}))
shown = p.show_instance("web-1")
print(json.dumps({"phase": "shown", "node": shown.node.id, "hostname": shown.hostname,
                  "active": shown.is_deployed}))
p.unprovision_node(inst.node, wait=120)
print(json.dumps({"phase": "undeployed", "node": inst.node.id}))
