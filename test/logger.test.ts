/**
 * The logger's own pieces: the time field it stamps on every line.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createLogger, isoTimeField } from '../src/log/logger.js';

describe('the time field', () => {
  it('is pino\'s isoTime, formatted once per millisecond', async () => {
    const field = isoTimeField();
    const match = /^,"time":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)"$/.exec(field);
    assert.ok(match, field);
    assert.ok(Math.abs(Date.parse(match[1] as string) - Date.now()) < 1000, 'the time is now');
    // same shape as pino's own isoTime
    assert.match(pino.stdTimeFunctions.isoTime(), /^,"time":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"$/);
    const later = await new Promise<string>((resolve) => setTimeout(() => resolve(isoTimeField()), 5));
    assert.notEqual(later, field, 'a later millisecond gets its own stamp');
    assert.ok(Date.parse(later.slice(9, -1)) > Date.parse(match[1] as string));
  });

  it('stamps every line of the gateway logger with it', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
    const logger = createLogger({ level: 'info', destination: sink });
    logger.info({ event: 'test' }, 'one');
    logger.info({ event: 'test' }, 'two');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 2);
    for (const line of lines) {
      const parsed = JSON.parse(line) as { time?: unknown; msg?: unknown };
      assert.equal(typeof parsed.time, 'string');
      assert.ok(!Number.isNaN(Date.parse(parsed.time as string)), line);
    }
  });
});
