import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, postJson, FAKE_PROVIDER_KEY, type Harness } from './helpers/harness.js';
import { fakeNewKey, fp, pkCli, writeCliConfig, writeSecret } from './helpers/provider-keys-setup.js';

describe('an interrupted rotation resumes from its recorded step', () => {
  let h: Harness;
  let cfg: string;
  const accepted = [FAKE_PROVIDER_KEY];

  before(async () => {
    h = await startHarness({ config: { rotation: { grace_period: '10m' } } });
    cfg = writeCliConfig(h, { rotation: { grace_period: '10m' } });
  });
  after(async () => { await h?.close(); });

  for (let crashAfter = 1; crashAfter <= 6; crashAfter++) {
    it(`crashes after step ${crashAfter} and a re-run reaches the correct end state`, async () => {
      const repo = h.gateway.store.providerKeys;
      const key = fakeNewKey(`crash${crashAfter}`); // fake, TEST ONLY
      accepted.push(key);
      h.mock.setApiKeys(accepted);
      const oldCurrent = (await repo.active()).find((k) => k.provider === 'openai' && k.state === 'current')!;
      const ref = writeSecret(h, `openai-crash-${crashAfter}`, key);

      const crashed = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--from', ref, '--yes'], { KEYWARDEN_ROTATION_CRASH_AFTER: String(crashAfter) });
      assert.equal(crashed.code, 70, crashed.stdout + crashed.stderr);
      assert.match(crashed.stdout, new RegExp(`step ${crashAfter}/6 \\S+: (ok|skipped)`));
      assert.doesNotMatch(crashed.stdout, new RegExp(`step ${crashAfter + 1}/6`));
      const rotation = await repo.getRotation('openai');
      if (crashAfter < 6) assert.equal(rotation?.step, crashAfter);
      else assert.equal(rotation, undefined);
      // the gateway keeps serving whatever is current at each point
      const mid = await postJson(`${h.url}/v1/chat/completions`, h.key, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(mid.status, 200);

      if (crashAfter < 6) {
        const resumed = await pkCli(h, cfg, ['provider-keys', 'rotate', 'openai', '--yes']);
        assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
        assert.match(resumed.stdout, new RegExp(`resuming rotation rot_\\w+ of openai after step ${crashAfter}/6`));
        for (let n = 1; n <= crashAfter; n++) assert.match(resumed.stdout, new RegExp(`step ${n}/6 \\S+: skipped`));
        assert.match(resumed.stdout, /step 6\/6 record: ok/);
      }
      const rows = (await repo.list()).filter((k) => k.provider === 'openai');
      const current = rows.filter((k) => k.state === 'current');
      assert.equal(current.length, 1);
      assert.equal(current[0]!.fingerprint, fp(key));
      assert.equal(rows.filter((k) => k.state === 'pending').length, 0);
      assert.equal(rows.find((k) => k.id === oldCurrent.id)?.state, 'previous');
      assert.equal(await repo.getRotation('openai'), undefined);
      const audit = await h.gateway.store.records.listAudit({ limit: 10_000 });
      const done = audit.filter((a) => a.action === 'provider_key.rotate' && a.outcome === 'success' && a.details['new_fingerprint'] === fp(key));
      assert.equal(done.length, 1);
      assert.equal(audit.filter((a) => a.action === 'provider_key.promote' && a.details['fingerprint'] === fp(key)).length, 1);
    });
  }
});
