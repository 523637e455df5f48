// Load test of a running `assistgen serve` with autocannon: CONNECTIONS
// concurrent clients for SECONDS seconds, POST /v1/completions, half of the
// requests streamed; passes only with zero errors, timeouts and non-2xx
// answers. Prints the figures (requests/s, latency percentiles).
import autocannon from 'autocannon';

const [base, apiKey, model, connections = "16", seconds = "10"] = process.argv.slice(2);
const body = (stream) => JSON.stringify({ model, prompt: 'And God said',
                                         max_tokens: 16, temperature: 0, stream });
const result = await autocannon({
  url: `${base}/v1/completions`,
  connections: Number(connections),
  duration: Number(seconds),
  timeout: 30,
  headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
  requests: [{ method: 'POST', body: body(false) }, { method: 'POST', body: body(true) }],
});
const failed = result.errors + result.timeouts + result.non2xx;
console.log(`autocannon: ${connections} connections for ${seconds} s: ${result.requests.total} requests ` +
            `(${result.requests.average} req/s), latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ` +
            `errors ${result.errors}, timeouts ${result.timeouts}, non-2xx ${result.non2xx}`);
if (result.requests.total < Number(connections) || failed !== 0) {
  console.log('FAIL: load test');
  process.exit(1);
}
console.log('load test passed');
