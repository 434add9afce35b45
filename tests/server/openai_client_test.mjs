// The official openai Node.js client against sbits-server: chat, streaming, completions,
// errors and API keys, as a real application would use them.
// usage: node openai_client_test.mjs SBITS_SERVER MODEL   (run by run_openai_client_test.sh)
import { spawn } from 'node:child_process';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [serverBin, modelPath] = process.argv.slice(2);
const servers = [];

// Starts sbits-server on 127.0.0.1 with a free port; resolves once /health answers 200.
async function startServer(extraArgs = []) {
  const proc = spawn(serverBin, [modelPath, '--host', '127.0.0.1', '--port', '0', ...extraArgs],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.push(proc);
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no port after 60 s:\n${log}`)), 60000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`sbits-server exited (${code}):\n${log}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {  // at most 60 s
    const res = await fetch(`${base}/health`).catch(() => null);
    if (res && res.status === 200) return { proc, base, log: () => log };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready after 60 s:\n${log}`);
}

async function stopServer(server) {
  const exited = new Promise((resolve) => server.proc.on('exit', (code) => resolve(code)));
  server.proc.kill('SIGTERM');
  let timer;
  const code = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r('timeout'), 30000); })]);
  clearTimeout(timer);  // a pending timer would keep node alive for its whole length
  if (code === 'timeout') server.proc.kill('SIGKILL');
  return code;
}

after(() => { for (const p of servers) if (p.exitCode === null) p.kill('SIGKILL'); });

const server = await startServer(['--parallel', '4']);
const client = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
const modelId = modelPath.split('/').pop().replace(/\.sbits$/, '');
const messages = [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: 'Lily' }];

test('models.list names the model', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, modelId);
  assert.equal(list.data[0].object, 'model');
});

test('chat: a whole reply, then the same reply streamed, with usage', async () => {
  const whole = await client.chat.completions.create({ model: modelId, messages, max_tokens: 24, temperature: 0 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices.length, 1);
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.equal(typeof whole.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
  assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + whole.usage.completion_tokens);

  const stream = await client.chat.completions.create({
    model: modelId, messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length === 0) continue;
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(chunks >= 3);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test('chat: logprobs through the client', async () => {
  const r = await client.chat.completions.create({
    model: modelId, messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content[0].top_logprobs.length, 2);
});

test('completions: whole and streamed agree', async () => {
  const whole = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
  assert.equal(whole.object, 'text_completion');
  assert.ok(whole.choices[0].text.length > 0);
  assert.equal(whole.usage.completion_tokens, 30);
  const stream = await client.completions.create({
    model: modelId, prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, whole.choices[0].text);
});

test('stop sequences through the client', async () => {
  const whole = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
  const stop = whole.choices[0].text.slice(10, 15);
  const r = await client.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: [stop] });
  assert.equal(r.choices[0].text, whole.choices[0].text.slice(0, whole.choices[0].text.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('errors arrive as the client\'s typed errors', async () => {
  await assert.rejects(client.chat.completions.create({ model: modelId, messages, n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /'n' must be 1/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: modelId, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && /at least one message/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: modelId, messages, temperature: 'warm' }),
    (e) => e instanceof OpenAI.BadRequestError && /'temperature' must be a number, got string/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
});

test('API key: the client\'s apiKey is checked', async () => {
  const keyed = await startServer(['--api-key', 'sk-test-123']);
  try {
    const good = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: 'sk-test-123', maxRetries: 0 });
    const bad = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: 'sk-test-124', maxRetries: 0 });
    assert.equal((await good.models.list()).data[0].id, modelId);
    await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
    const r = await good.chat.completions.create({ model: modelId, messages, max_tokens: 3 });
    assert.equal(r.object, 'chat.completion');
  } finally {
    assert.equal(await stopServer(keyed), 0);
  }
});

test('the server exits cleanly', async () => {
  assert.equal(await stopServer(server), 0);
});
