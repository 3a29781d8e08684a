// The official TypeScript SDK (npm retell-sdk, unmodified) against a running uponai:
// create an agent, import a number, place a call, list calls, catch a 400.
// Usage: node check.mjs <base_url> <api_key>. Prints "N passed, N failed".
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

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
