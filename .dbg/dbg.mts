import { Simulation } from '../test/sim/sim.ts';
const sim = new Simulation(Number(process.argv[2] ?? 11));
const r = await sim.run();
console.log(r.violation?.kind);
for (const inst of (sim as any).instances) {
  if (!inst.alive) continue;
  const d = inst.core.dispatcher;
  console.log(inst.id, "stuck", d.stuck.size, [...d.slotless].map((s:any)=>[s.open, s.batch && [...s.batch.open].map((i:any)=>i.tp+"@"+i.offset), s.batch?.round.length, s.batch?.calling]), "running", d.running.size, 'slotless', d.slotless.size, 'reentry', d.reentry.length, 'takeable', d.scheduler.takeable, 'waiting', d.scheduler.waiting, 'ready', d.scheduler.ready.size, 'formTimer', !!d.formTimer, 'formingSince', d.formingSince, 'state', inst.core.state.canStart, inst.core.state.phase, 'buffer', inst.core.buffered);
  console.log([...d.scheduler.lanes.entries()].map(([l,q])=>[l.replace('\u0000','/'), q.map((x:any)=>x.offset)]), [...d.scheduler.batched], [...d.scheduler.idle]);
  for (const s of d.running) console.log('slot', s.open, s.batch && [...s.batch.open].map((i:any)=>i.tp+'@'+i.offset), s.batch?.round.length);
}
process.exit(0);
