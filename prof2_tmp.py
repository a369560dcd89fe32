import time, json, zlib
import requests
from exporter.simulator import Simulator
from exporter.model import parse_inventory
from exporter.exposition import render_inventory
from exporter.encoding import deflate_all
names = [f"bench-{i:04d}" for i in range(200)]
with Simulator(dict.fromkeys(names, 100), "bench-key", seed=8, clock=lambda: 1.7e9) as sim:
    s = requests.Session()
    bodies = [s.get(f"{sim.base_url}/api/v1/subaccounts/{n}/numbers", headers={"Authorization": "Bearer bench-key"}).content for n in names]
def t(f):
    a = time.process_time(); [f(b, n) for b, n in zip(bodies, names)]; return (time.process_time() - a) / len(bodies) * 1e3
for _ in range(2):
  print("json.loads ms", t(lambda b, n: json.loads(b)))
  print("parse ms", t(lambda b, n: parse_inventory(b, True, ["bench-key"])))
  invs = [parse_inventory(b, True, []) for b in bodies]
  a = time.process_time(); rs = [render_inventory(i, n) for i, n in zip(invs, names)]; print("render ms", (time.process_time()-a)/len(invs)*1e3)
  a = time.process_time(); [deflate_all(r.samples.values()) for r in rs]; print("deflate ms", (time.process_time()-a)/len(invs)*1e3)
