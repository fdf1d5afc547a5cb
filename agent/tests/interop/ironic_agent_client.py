"""Drive a running Ferrite agent with OpenStack Ironic's own AgentClient (wire check).

Not part of `cargo xtask test` (it needs `pip install ironic`, ~2 minutes). Run by hand:

    python3 -m venv /tmp/ironic-venv && /tmp/ironic-venv/bin/pip install ironic
    /tmp/ironic-venv/bin/python agent/tests/interop/ironic_agent_client.py \
        http://127.0.0.1:9999 [AGENT_TOKEN]

against an agent serving `ferrite_agent::api::serve` with recording system hooks (it
sends standby.power_off and, last, system.lockdown, which stops the agent's API).
"""
import json, base64, gzip, io, tarfile, sys

URL = sys.argv[1] if len(sys.argv) > 1 else 'http://127.0.0.1:9999'
TOKEN = sys.argv[2] if len(sys.argv) > 2 else None
from ironic.common import exception
from ironic.conf import CONF
CONF([], project='ironic')
CONF.set_override('command_wait_interval', 0, group='agent')
CONF.set_override('post_deploy_get_power_state_retry_interval', 0, group='agent')
from ironic.drivers.modules import agent_client

class Node:
    uuid = '1be26c0b-03f2-4d2e-ae87-c02d7f33c123'
    driver_info = {}
    def __init__(self, token):
        self.driver_internal_info = {'agent_url': URL, 'agent_secret_token': token}
    def as_dict(self, secure=False):
        return {'uuid': self.uuid, 'driver_internal_info': self.driver_internal_info}

class Port:
    def as_dict(self):
        return {'address': '52:54:00:12:34:56'}

c = agent_client.AgentClient()
node = Node(TOKEN)
print('status list:', c.get_commands_status(node))
r = c.sync(node); print('sync:', r['command_status'], r['command_result'])
r = c.get_clean_steps(node, [Port()]); print('clean steps:', json.dumps(r['command_result']))
r = c.get_deploy_steps(node, [Port()]); print('deploy steps:', json.dumps(r['command_result']))
r = c.collect_system_logs(node)
data = base64.b64decode(r['command_result']['system_logs'])
names = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))).getnames()
print('logs:', names)
r = c.get_commands_status(node); print('statuses:', [(x['command_name'], x['command_status']) for x in r])
try:
    c.get_commands_status(Node('wrong-token-wrong-token-wrong-token!'))
except Exception as e:
    print('wrong token ->', type(e).__name__, e)
r = c.power_off(node); print('power_off:', r['command_status'])
r = c._command(node, 'poll.get_hardware_info', {}, wait=True); print('hw cpu count:', r['command_result']['cpu']['count'])
try:
    c.execute_clean_step({'step': 'erase_devices_metadata', 'interface': 'deploy', 'priority': 99}, node, [Port()])
    print('execute_clean_step:', c.get_commands_status(node)[-1]['command_error'])
except Exception as e:
    print('execute_clean_step ->', type(e).__name__, e)
try:
    c.get_partition_uuids(node)
except Exception as e:
    print('unknown command ->', type(e).__name__, e)
c.lockdown(node)
print('lockdown done')
