// A Cosmos DB REST server for the tests, on loopback, with keep-alive (the package's own CLI closes every
// connection: ~40 ms an operation instead of ~2 ms). Prints "listening <port>" once ready.
const { createHttpsServer } = require("@vercel/cosmosdb-server");

const port = parseInt(process.argv[2] || "0", 10);
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0)); // keep-alive sockets would hold close() open
