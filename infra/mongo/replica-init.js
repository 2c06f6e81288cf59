// docker compose --profile replica: make the replica set tacoord-rs once, then wait for a primary.
// Run by the one-shot mongo-rs-init (docker-compose.yml) against mongo-rs1; running it again
// finds the set made and only waits. Exits 1 when no primary is elected within 120 s.
const members = ["mongo-rs1:27017", "mongo-rs2:27017", "mongo-rs3:27017"];
let made = true;
try {
  rs.status();
} catch (error) {
  made = false;
}
if (!made) {
  rs.initiate({_id: "tacoord-rs", members: members.map((host, i) => ({_id: i, host: host}))});
  print("replica set tacoord-rs initiated: " + members.join(", "));
}
for (let waited = 0; ; waited++) {
  const primary = rs.status().members.find((m) => m.stateStr === "PRIMARY");
  if (primary) {
    print("primary: " + primary.name);
    break;
  }
  if (waited >= 120) {
    print("no primary elected after 120 s");
    quit(1);
  }
  sleep(1000);
}
