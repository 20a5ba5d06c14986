/**
 * Prompt DLP and log scrubbing cost, measured in-process (no network):
 *
 *   - the `dlp` stage on a typical chat body (a system prompt and a few turns, ~2 KB of text),
 *     with DLP off, secrets `mask`, and secrets + every PII rule `mask`; on clean text and on
 *     text holding a FAKE key, an e-mail and a card number;
 *   - the logger's scrubber on a typical request log line: the regex-only scrubber it had
 *     before the detector pass (reproduced here) and today's `scrubSecrets`.
 *
 *   node dist/bench/dlp-bench.js          (after `npm run build`; `npm run bench` runs it last)
 *
 * Environment: DLP_BENCH_ITERATIONS (default 20000). Prints a table and one `DLP_BENCH_JSON {…}` line.
 */
import { createDlpStage } from '../src/dlp/stage.js';
import type { DlpPolicy } from '../src/dlp/types.js';
import { scrubSecrets } from '../src/log/redact.js';
import { FAKE } from '../test/fixtures/detect/fixtures.js';

const iterations = Number(process.env['DLP_BENCH_ITERATIONS'] ?? '20000');
if (!Number.isInteger(iterations) || iterations < 100) throw new Error('DLP_BENCH_ITERATIONS must be a whole number of at least 100');

const PARAGRAPH = 'Summarise the quarterly report for the board. Revenue grew 12% to 4.2 million, churn fell to 3.1%, ' +
  'and the team shipped the new onboarding flow in week 23. Keep it under 200 words and list three risks. ';

function chatBody(dirty: boolean): Record<string, unknown> {
  const secret = dirty ? ` my key is ${FAKE.openaiProject} and mail ada@example.org, card 4111 1111 1111 1111` : '';
  return {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: `You are a helpful analyst. ${PARAGRAPH}` },
      { role: 'user', content: PARAGRAPH.repeat(4) + secret },
      { role: 'assistant', content: PARAGRAPH.repeat(2) },
      { role: 'user', content: [{ type: 'text', text: PARAGRAPH.repeat(3) }, { type: 'text', text: 'and a table, please' }] },
    ],
  };
}

const POLICIES: Record<string, DlpPolicy | undefined> = {
  off: { secrets: 'off', pii: 'off', piiRules: [] },
  'secrets mask': { secrets: 'mask', pii: 'off', piiRules: [] },
  'secrets + pii mask': { secrets: 'mask', pii: 'mask', piiRules: ['email', 'phone', 'card', 'iban'] },
};

/** Microseconds per call, the median of 5 rounds (after a warm-up round). */
function timeUs(fn: () => unknown): number {
  const rounds: number[] = [];
  for (let r = 0; r < 6; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / iterations;
    if (r > 0) rounds.push(us);
  }
  rounds.sort((a, b) => a - b);
  return rounds[2] as number;
}

// the scrubber as it was before the detector pass: registered values, then one key-shape pattern
const OLD_KEY_PATTERN = /kw_[A-Za-z0-9]{4,32}_[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{12,}|AKIA[0-9A-Z]{16}|(?<=Bearer\s+)[^\s"',]{8,}/g;
const OLD_REGISTERED = ['fake-admin-token-BENCH-ONLY-0000000000000', 'sk-fake-BENCH-ONLY-provider-key-00000000000000000', 'fake-prompt-hmac-key-BENCH-ONLY-00000000000'];
function oldScrub(text: string): string {
  let out = text;
  for (const secret of OLD_REGISTERED) if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
  OLD_KEY_PATTERN.lastIndex = 0;
  return OLD_KEY_PATTERN.test(out) ? out.replace(OLD_KEY_PATTERN, '[REDACTED]') : out;
}

const LOG_LINE = JSON.stringify({
  level: 30, time: '2024-06-07T12:00:00.000Z', service: 'keywarden', requestId: '0f8b6a4e-2c1d-4c5e-9a7b-3d2e1f0a9b8c', tenant: 'acme',
  keyId: 'k_3f9a2b7c1d4e5f60', endpoint: 'chat', provider: 'openai', model: 'gpt-4o-mini', stream: false, status: 200, outcome: 'success',
  code: null, inputTokens: 412, outputTokens: 96, gatewayMs: 0.412, upstreamMs: 231.907, msg: 'request',
}) + '\n';

function main(): void {
  const stage = createDlpStage({});
  const rows: string[][] = [['case', 'clean body µs', 'dirty body µs']];
  const json: Record<string, unknown> = { iterations };
  const bodies = { clean: chatBody(false), dirty: chatBody(true) };
  for (const [name, policy] of Object.entries(POLICIES)) {
    const clean = timeUs(() => stage.apply('chat', bodies.clean, policy));
    const dirty = timeUs(() => stage.apply('chat', bodies.dirty, policy));
    rows.push([`dlp ${name}`, clean.toFixed(2), dirty.toFixed(2)]);
    json[`dlp ${name}`] = { cleanUs: round(clean), dirtyUs: round(dirty) };
  }
  const before = timeUs(() => oldScrub(LOG_LINE));
  const after = timeUs(() => scrubSecrets(LOG_LINE));
  rows.push(['log line scrub, before (regex only)', before.toFixed(2), '']);
  rows.push(['log line scrub, now (+ detectors)', after.toFixed(2), '']);
  json['logScrub'] = { lineBytes: LOG_LINE.length, beforeUs: round(before), afterUs: round(after) };
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  process.stdout.write(`\nprompt DLP and log scrubbing, ${iterations} calls per case (chat body ${JSON.stringify(bodies.clean).length} bytes; log line ${LOG_LINE.length} bytes)\n`);
  for (const r of rows) process.stdout.write(`  ${r.map((c, i) => c.padEnd(width[i] as number)).join('  ')}\n`);
  process.stdout.write(`DLP_BENCH_JSON ${JSON.stringify(json)}\n`);
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

main();
