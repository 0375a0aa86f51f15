import { Simulation } from '../test/sim/sim.ts';
const sim = new Simulation(Number(process.argv[2]));
const r = await sim.run();
console.log(r.violation?.kind);
for (const inst of (sim as any).instances) {
  if (!inst.alive) continue;
  const d = inst.core.dispatcher;
  const a = inst.core.assignment;
  for (const s of d.running) {
    if (!s.batch) continue;
    const b = s.batch;
    console.log(inst.id, 'calling', b.calling, 'round', b.round.map((x:any)=>x.item.tp+'@'+x.item.offset));
    for (const i of b.open) console.log('  open', i.tp+'@'+i.offset, 'owns', a.owns(i), 'owned verified', a.get(i.tp)?.verified, 'claim', b.claimOf.get(i), 'holder', b.claims.get(b.claimOf.get(i))?.offset, 'holdsSlot', d.holdsSlot(i));
  }
}
const store=(sim as any).store; console.log(store); process.exit(0);
