import json,sys,re,math
from collections import Counter,defaultdict
f=sys.argv[1]
rows=[json.loads(l) for l in open(f)][:-1]
spd={'slowly':64/128,'quickly':64/48}
stats=defaultdict(list)
for r in rows:
    caps=r['caption'].split(' on a ')[0].split(' and ')
    objs=r['segments'][0]['objects']
    for c,o in zip(caps,objs):
        m=re.search(r'(staying still|moving (\w+) (\w+))',c)
        if m.group(1)=='staying still': kind='still'; exp=0
        else: kind=m.group(2)+'-'+m.group(3); exp=spd[m.group(3)]*16
        d=o['displacement']
        stats[kind.split('-')[0] if kind!='still' else 'still'].append((o['colour'],o['motion'],o['found_fraction'],d,exp))
for k,v in stats.items():
    n=len(v); col=sum(x[0] for x in v); mot=sum(x[1] for x in v)
    mot_c=sum(x[1] for x in v if x[0])
    print(f"{k:6s} n={n:3d} colour={col/n:.2f} motion={mot/n:.2f} motion|colour={mot_c/max(col,1):.2f}")
    for x in v[:8]:
        d=x[3]; print("   ", x[0],x[1],round(x[2],2), None if d is None else [round(d[0],1),round(d[1],1)], round(x[4],1))
