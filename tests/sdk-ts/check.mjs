// The official TypeScript SDK (npm retell-sdk, unmodified) against a running uponai:
// create an agent, import a number, place a call, list calls, catch a 400, verify webhooks.
// Usage: node check.mjs <base_url> <api_key>. Prints "N passed, N failed".
import http from 'node:http';
import net from 'node:net';
import Retell from 'retell-sdk';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new Retell({ apiKey, baseURL, maxRetries: 0 });
let passed = 0;
let failed = 0;

async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

let agent;
let call;
const number = '+14155559001';

await check('create an agent', async () => {
  const llm = await client.llm.create({ general_prompt: 'You are helpful.', begin_message: 'Hello' });
  agent = await client.agent.create({
    response_engine: { type: 'retell-llm', llm_id: llm.llm_id },
    voice_id: 'espeak-en-us-male',
    agent_name: 'TS agent',
  });
  assert(agent.agent_id.startsWith('agent_') && agent.version === 0, JSON.stringify(agent));
});

await check('import a number', async () => {
  const imported = await client.phoneNumber.import({
    phone_number: number,
    termination_uri: 'trunk.example.com',
    outbound_agents: [{ agent_id: agent.agent_id, weight: 1 }],
  });
  assert(imported.phone_number === number && imported.phone_number_type === 'custom', JSON.stringify(imported));
});

await check('place a call', async () => {
  call = await client.call.createPhoneCall({
    from_number: number,
    to_number: '+12137774445',
    retell_llm_dynamic_variables: { name: 'John Doe' },
    custom_sip_headers: { 'X-Custom-Header': 'Custom Value' },
  });
  assert(call.call_status === 'registered' && call.agent_id === agent.agent_id, JSON.stringify(call));
});

await check('list calls', async () => {
  const page = await client.call.list({ filter_criteria: { agent: [{ agent_id: agent.agent_id }] } });
  assert(page.items.length === 1 && page.items[0].call_id === call.call_id, JSON.stringify(page));
});

await check('catch a 400', async () => {
  try {
    await client.call.createPhoneCall({ from_number: number, to_number: 'not-a-number' });
    throw new Error('expected a 400');
  } catch (err) {
    assert(err instanceof Retell.BadRequestError, `wrong class: ${err?.constructor?.name}`);
    assert(err.status === 400 && err.error.message.startsWith('to_number'), err.message);
  }
});

await check('webhooks verify with Retell.verify', async () => {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      received.push({ body, signature: req.headers['x-retell-signature'] });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const closed = net.createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const deadPort = closed.address().port;
  await new Promise((resolve) => closed.close(resolve));
  try {
    const llm = await client.llm.create({});
    const hooked = await client.agent.create({
      response_engine: { type: 'retell-llm', llm_id: llm.llm_id },
      voice_id: 'espeak-en-us-male',
      webhook_url: `http://127.0.0.1:${server.address().port}/hook`,
    });
    const from = '+14155559002';
    // A trunk refusing connections: the call fails at once (call_failed, call_ended, call_analyzed).
    await client.phoneNumber.import({
      phone_number: from,
      termination_uri: `127.0.0.1:${deadPort};transport=tcp`,
      outbound_agents: [{ agent_id: hooked.agent_id, weight: 1 }],
    });
    await client.call.createPhoneCall({ from_number: from, to_number: '+12125550123' });
    for (let i = 0; i < 150 && received.length < 3; i += 1) await new Promise((r) => setTimeout(r, 100));
  } finally {
    server.close();
  }
  assert(received.length === 3, `got ${received.length} webhooks`);
  for (const { body, signature } of received) {
    assert(await Retell.verify(body, apiKey, signature), `signature rejected: ${signature}`);
    assert(!(await Retell.verify(body + ' ', apiKey, signature)), 'a changed body must fail');
  }
  const names = received.map(({ body }) => JSON.parse(body).event).join(',');
  assert(names === 'call_failed,call_ended,call_analyzed', names);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
