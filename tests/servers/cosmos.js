// A Cosmos DB REST server for the tests, on loopback: @vercel/cosmosdb-server, made closer to the real service
// where the store depends on it. Prints "listening <port>" once ready.
//
//   node cosmos.js <port> [--cert cert.pem --key key.pem] [--read-only-key KEY] [--data-plane-key KEY]
//                  [--throttle-every N]
//
// - keep-alive (the package's own CLI closes every connection: ~40 ms an operation instead of ~2 ms);
// - transactional batches as the real service takes them: the SDK sends the partition key in a header the package
//   cannot parse, so it is copied into each operation; batches over 100 operations or 2 MB are refused (400/413);
// - a read-only key: requests signed with it may read and query, never write (403), as Azure's read-only keys;
// - a data-plane key: requests signed with it may read and write items but not create databases or containers
//   (403), as an Entra identity holding only the Cosmos DB Built-in Data Contributor role;
// - optional throttling: every Nth write answers 429 with x-ms-retry-after-ms, as a busy container does.
const crypto = require("crypto");
const fs = require("fs");
const { Readable } = require("stream");
const { createHttpsServer } = require("@vercel/cosmosdb-server");

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const port = parseInt(args[0] || "0", 10);
const readOnlyKey = option("--read-only-key");
const dataPlaneKey = option("--data-plane-key");
const throttleEvery = parseInt(option("--throttle-every") || "0", 10);
const tls = option("--cert") ? { cert: fs.readFileSync(option("--cert")), key: fs.readFileSync(option("--key")) } : {};

const MAX_BATCH_OPERATIONS = 100;
const MAX_BATCH_BYTES = 2 * 1024 * 1024;
let writes = 0;

function signedWith(req, key) {
  // The master-key signature: verb, resource type, resource link and date, as the REST API documents it.
  const auth = decodeURIComponent(req.headers.authorization || "");
  const sig = (auth.match(/sig=(.*)$/) || [])[1];
  const segments = decodeURIComponent(req.url.split("?")[0]).split("/").filter(Boolean);
  const type = segments.length % 2 ? segments[segments.length - 1] : segments[segments.length - 2] || "";
  const link = (segments.length % 2 ? segments.slice(0, -1) : segments).join("/");
  const text = `${req.method.toLowerCase()}\n${type.toLowerCase()}\n${link}\n` +
    `${(req.headers["x-ms-date"] || "").toLowerCase()}\n${(req.headers.date || "").toLowerCase()}\n`;
  const expected = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(text).digest("base64");
  return sig === expected;
}

function isQuery(req) {
  return String(req.headers["x-ms-documentdb-isquery"]).toLowerCase() === "true" ||
    req.headers["content-type"] === "application/query+json";
}

function isWrite(req) {
  if (req.method === "GET" || req.method === "HEAD") return false;
  return !(req.method === "POST" && isQuery(req));
}

function refuse(res, status, message, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", connection: "keep-alive", ...headers });
  res.end(JSON.stringify({ code: String(status), message }));
}

const server = createHttpsServer({ keepAlive: true, ...tls });
const [handle] = server.listeners("request");
server.removeAllListeners("request");
server.on("request", (req, res) => {
  req.socket.setNoDelay(true);
  if (readOnlyKey && isWrite(req) && signedWith(req, readOnlyKey)) {
    return refuse(res, 403, "Request blocked: the key used is a read-only key.");
  }
  if (dataPlaneKey && req.method === "POST" && /^\/dbs(\/[^/]+\/colls)?\/?$/.test(req.url.split("?")[0]) &&
      !isQuery(req) && signedWith(req, dataPlaneKey)) {
    return refuse(res, 403, `Request blocked by Auth: the given request [POST ${req.url.split("?")[0]}] cannot be ` +
      "authorized by AAD token in data plane.");
  }
  if (throttleEvery && isWrite(req) && ++writes % throttleEvery === 0) {
    return refuse(res, 429, "Request rate is large.", { "x-ms-retry-after-ms": "20" });
  }
  const batch = String(req.headers["x-ms-cosmos-is-batch-request"]).toLowerCase() === "true";
  if (!batch) return handle(req, res);
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    let operations;
    try {
      operations = JSON.parse(body.toString());
    } catch (error) {
      return refuse(res, 400, "The batch is not JSON.");
    }
    if (!Array.isArray(operations) || operations.length > MAX_BATCH_OPERATIONS) {
      return refuse(res, 400, `A batch holds at most ${MAX_BATCH_OPERATIONS} operations.`);
    }
    if (body.length > MAX_BATCH_BYTES) return refuse(res, 413, "Request size is too large.");
    const key = req.headers["x-ms-documentdb-partitionkey"];
    for (const op of operations) if (op && op.partitionKey === undefined && key) op.partitionKey = key;
    const replay = Readable.from([Buffer.from(JSON.stringify(operations))]);
    Object.assign(replay, { headers: req.headers, method: req.method, url: req.url, socket: req.socket });
    handle(replay, res);
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0)); // keep-alive sockets would hold close() open
