import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';
import { ServiceError } from '../services/tenant-service.js';
import { SecretError } from '../secrets/types.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './output.js';
import { configFor } from './config-arg.js';
import { commandTarget } from './target.js';

const USAGE = `usage: keywarden <command> [options]

commands:
  serve [--config FILE]                 run the gateway (no config: demo mode with the mock provider)
  doctor --config FILE [--online]       check a configuration and its secrets without serving
  tenants create NAME [--policy-file F] | list | disable NAME | enable NAME | set-policy NAME --policy-file F
  tenants set-limits NAME [--rpm N] [--tpm N] [--tpd N] [--usd-day X] [--usd-month X] [--concurrent N] [--per-key]
                                        limits over the tenant (or, with --per-key, for each of its keys);
                                        a value of "none" removes that limit
  keys set-limits KEY_ID [--rpm N] [--tpm N] [--tpd N] [--usd-day X] [--usd-month X] [--concurrent N] | --clear
  keys issue --tenant NAME [--expires 30d] [--label L] [--json] | list [--tenant NAME] | revoke KEY_ID
  secrets encrypt --file PATH --name NAME --key REF [--json]   store a secret (read from stdin) in an encrypted file
  secrets gen-key [--file PATH]         make a key for encrypted secrets files
  scan [PATH...|-] [--format text|json|sarif] [--git-history|--staged] [--ignore-file F]   find leaked keys
  scan --install-hook [--force] [PATH]  install a git pre-commit hook that scans staged changes
  mock-provider [--port N] [--host H] [--api-key REF]   serve the mock OpenAI/Anthropic provider
  provider-keys list [--json] | due [--within 7d]       the provider key register (fingerprints only); due exits 1 when one is overdue
  provider-keys rotate PROVIDER [--from REF] [--logs PATH]... [--owner NAME] [--yes]   verify, promote, retire (6 resumable steps)
  provider-keys revoke KEY_ID [--provider-side] | set-owner KEY_ID --owner NAME [--purpose TEXT] [--rotate-every 60d]
  offboard --owner NAME --to NAME [--dry-run]           rotate every key a person owns and hand them over
  audit verify [--json]                 walk the audit hash chain; exit 1 naming the first altered, removed or reordered row
  audit hash VALUE                      the hmac-sha256: value a client address or key id is stored as, to search for it
  audit prune [--before DATE] [--json]  remove audit rows past audit.retention (or DATE) with a signed checkpoint
  audit export --since DATE [--until DATE] --format jsonl|csv [--out FILE]   audit rows for a SIEM (ids and HMACs, no content)
  incident contain --provider-key FINGERPRINT | --tenant-key KEY_ID | --tenant NAME [--json]   revoke/disable at once and open an incident
  incident investigate INCIDENT_ID [--since DATE|DURATION] [--json] | report INCIDENT_ID | list [--json]   blast radius, postmortem draft
  drill [--json]                        rehearse an incident against the mock provider and time each step
  admin-tokens issue --owner NAME --role viewer|operator|admin [--tenant NAME]... [--expires 90d] [--json]
                                        an admin API token (shown once), optionally limited to some tenants
  admin-tokens list [--json] | revoke TOKEN_ID
  usage [--tenant NAME] [--since 24h|DATE] [--until DATE] [--json]   requests, tokens and cost per tenant and model

Every command takes --config FILE (or KEYWARDEN_CONFIG); without one, store commands use the demo store.
tenants, keys, incident (not drill), admin-tokens, usage, provider-keys and audit verify|export also work
through a running gateway's admin API, so every replica sees a change at once:
  --admin-url URL (or KEYWARDEN_ADMIN_URL)   https://… (plain http only to a loopback address)
  --admin-token-file PATH (mode 0600) or KEYWARDEN_ADMIN_TOKEN   the admin token (never printed)
provider-keys through the API needs an unscoped admin token, and rotate takes no --logs there (the gateway
reads no file a client names); audit verify|export need an unscoped admin token. offboard, secrets,
audit prune|hash and doctor work on the store or vault only.
`;

/** The `keywarden` CLI. Sets process.exitCode; prints operator-readable errors, never stack traces. */
export async function main(argv: readonly string[]): Promise<void> {
  try {
    process.exitCode = (await run(argv)) ?? 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`keywarden: ${err.message}\n`);
      process.exitCode = EXIT_USAGE;
    } else if (err instanceof CliError) {
      process.stderr.write(`keywarden: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else if (err instanceof ServiceError || err instanceof SecretError) {
      process.stderr.write(`keywarden: ${err.message}\n`);
      process.exitCode = EXIT_FAILURE;
    } else if ((err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`keywarden: ${(err as Error).message}\n${USAGE}`);
      process.exitCode = EXIT_USAGE;
    } else {
      process.stderr.write(`keywarden: ${(err as Error).message ?? 'failed'}\n`);
      process.exitCode = EXIT_FAILURE;
    }
  }
}

/** The commands that can work through a running gateway's admin API (`--admin-url`). */
const REMOTE_COMMANDS: ReadonlySet<string> = new Set(['tenants', 'keys', 'incident', 'admin-tokens', 'usage', 'provider-keys', 'audit']);

/** `--tenant` may repeat for `admin-tokens issue` only; elsewhere a second one is a usage error, not silently dropped. */
function oneTenant(values: readonly string[] | undefined, command: string): string | undefined {
  if (values === undefined || command === 'admin-tokens') return undefined;
  if (values.length > 1) throw new CliError(`"${command.slice(0, 40)}" takes one --tenant`, EXIT_USAGE);
  return values[0];
}

/** The limit flags given, as a limits mapping (`none` → null, which removes the limit). */
function limitFlags(values: Record<string, string | boolean | string[] | undefined>): Record<string, number | null> {
  const flags: Array<[string, string]> = [
    ['rpm', 'requests_per_minute'], ['tpm', 'tokens_per_minute'], ['tpd', 'tokens_per_day'],
    ['usd-day', 'usd_per_day'], ['usd-month', 'usd_per_month'], ['concurrent', 'concurrent_requests'],
  ];
  const out: Record<string, number | null> = {};
  for (const [flag, name] of flags) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    if (raw === 'none') {
      out[name] = null;
      continue;
    }
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new CliError(`--${flag} must be a number or "none"`, EXIT_USAGE);
    out[name] = n;
  }
  return out;
}

async function run(argv: readonly string[]): Promise<number | void> {
  // scan parses its own flags (paths, `-`, repeated --ignore-file)
  if (argv[0] === 'scan') {
    const { scanCommand } = await import('./commands/scan.js');
    return scanCommand(argv.slice(1));
  }
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean', default: false },
      // repeated only by `admin-tokens issue`; every other command takes one (see oneTenant)
      tenant: { type: 'string', multiple: true },
      role: { type: 'string' },
      'admin-url': { type: 'string' },
      'admin-token-file': { type: 'string' },
      expires: { type: 'string' },
      label: { type: 'string' },
      'policy-file': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'api-key': { type: 'string' },
      online: { type: 'boolean', default: false },
      rpm: { type: 'string' },
      tpm: { type: 'string' },
      tpd: { type: 'string' },
      'usd-day': { type: 'string' },
      'usd-month': { type: 'string' },
      concurrent: { type: 'string' },
      'per-key': { type: 'boolean', default: false },
      clear: { type: 'boolean', default: false },
      file: { type: 'string' },
      name: { type: 'string' },
      key: { type: 'string' },
      from: { type: 'string' },
      logs: { type: 'string', multiple: true },
      yes: { type: 'boolean', default: false },
      'provider-side': { type: 'boolean', default: false },
      within: { type: 'string' },
      owner: { type: 'string' },
      purpose: { type: 'string' },
      'rotate-every': { type: 'string' },
      to: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      since: { type: 'string' },
      until: { type: 'string' },
      before: { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      'provider-key': { type: 'string' },
      'tenant-key': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, action, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? EXIT_USAGE : 0;
  }
  const adminFlags = {
    ...(values.config !== undefined ? { config: values.config } : {}),
    ...(values['admin-url'] !== undefined ? { adminUrl: values['admin-url'] } : {}),
    ...(values['admin-token-file'] !== undefined ? { adminTokenFile: values['admin-token-file'] } : {}),
  };
  if ((adminFlags.adminUrl !== undefined || adminFlags.adminTokenFile !== undefined) && !REMOTE_COMMANDS.has(command)) {
    // provider keys, secrets and the audit chain need the vault or the store itself
    throw new CliError(`"${command.slice(0, 40)}" works on the store only; --admin-url applies to ${[...REMOTE_COMMANDS].join(', ')}`, EXIT_USAGE);
  }
  const tenant = oneTenant(values.tenant, command);
  switch (command) {
    case 'serve': {
      const { serveCommand } = await import('./commands/serve.js');
      return serveCommand(values.config);
    }
    case 'doctor': {
      const path = values.config ?? process.env['KEYWARDEN_CONFIG'];
      if (!path) throw new CliError('usage: keywarden doctor --config FILE [--online]', EXIT_USAGE);
      const { doctorCommand } = await import('./commands/doctor.js');
      return doctorCommand(path, values.online ?? false);
    }
    case 'tenants': {
      const { tenantsCommand } = await import('./commands/tenants.js');
      return tenantsCommand(commandTarget(adminFlags), action, rest, {
        json: values.json ?? false,
        ...(values['policy-file'] ? { policyFile: values['policy-file'] } : {}),
        limits: limitFlags(values),
        perKey: values['per-key'] ?? false,
      });
    }
    case 'keys': {
      const { keysCommand } = await import('./commands/tenants.js');
      return keysCommand(commandTarget(adminFlags), action, rest, {
        json: values.json ?? false,
        ...(tenant ? { tenant } : {}),
        ...(values.expires ? { expires: values.expires } : {}),
        ...(values.label ? { label: values.label } : {}),
        limits: limitFlags(values),
        clear: values.clear ?? false,
      });
    }
    case 'secrets': {
      const { secretsCommand } = await import('./commands/secrets.js');
      return secretsCommand(action, rest, {
        json: values.json ?? false,
        ...(values.file !== undefined ? { file: values.file } : {}),
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(values.key !== undefined ? { key: values.key } : {}),
      });
    }
    case 'mock-provider': {
      const { mockProviderCommand } = await import('./commands/mock-provider.js');
      return mockProviderCommand(values.port, values.host, values['api-key']);
    }
    case 'provider-keys':
    case 'offboard': {
      const { providerKeysCommand, offboardCommand } = await import('./commands/provider-keys.js');
      const flags = {
        json: values.json ?? false, yes: values.yes ?? false, providerSide: values['provider-side'] ?? false, dryRun: values['dry-run'] ?? false,
        ...(values.from !== undefined ? { from: values.from } : {}), ...(values.logs !== undefined ? { logs: values.logs } : {}),
        ...(values.within !== undefined ? { within: values.within } : {}), ...(values.owner !== undefined ? { owner: values.owner } : {}),
        ...(values.purpose !== undefined ? { purpose: values.purpose } : {}), ...(values['rotate-every'] !== undefined ? { rotateEvery: values['rotate-every'] } : {}),
        ...(values.to !== undefined ? { to: values.to } : {}),
      };
      if (command === 'offboard') {
        if (action !== undefined) throw new CliError('usage: keywarden offboard --owner NAME --to NAME [--dry-run]', EXIT_USAGE);
        return offboardCommand(configFor(values.config).config, flags);
      }
      return providerKeysCommand(commandTarget(adminFlags), action, rest, flags);
    }
    case 'audit': {
      const [{ auditCommand }, { auditTarget }] = await Promise.all([import('./commands/audit.js'), import('./remote-audit.js')]);
      // verify and export also through the admin API; prune and hash are refused there (the store only)
      return auditCommand(auditTarget(action, adminFlags), action, rest, {
        json: values.json ?? false,
        ...(values.since !== undefined ? { since: values.since } : {}), ...(values.until !== undefined ? { until: values.until } : {}),
        ...(values.before !== undefined ? { before: values.before } : {}), ...(values.format !== undefined ? { format: values.format } : {}),
        ...(values.out !== undefined ? { out: values.out } : {}),
      });
    }
    case 'incident': {
      const { incidentCommand } = await import('./commands/incident.js');
      return incidentCommand(commandTarget(adminFlags), action, rest, {
        json: values.json ?? false,
        ...(values['provider-key'] !== undefined ? { providerKey: values['provider-key'] } : {}),
        ...(values['tenant-key'] !== undefined ? { tenantKey: values['tenant-key'] } : {}),
        ...(tenant !== undefined ? { tenant } : {}),
        ...(values.since !== undefined ? { since: values.since } : {}),
      });
    }
    case 'admin-tokens': {
      const { adminTokensCommand } = await import('./commands/admin-tokens.js');
      return adminTokensCommand(commandTarget(adminFlags), action, rest, {
        json: values.json ?? false,
        ...(values.owner !== undefined ? { owner: values.owner } : {}),
        ...(values.role !== undefined ? { role: values.role } : {}),
        ...(values.tenant !== undefined ? { tenants: values.tenant } : {}),
        ...(values.expires !== undefined ? { expires: values.expires } : {}),
      });
    }
    case 'usage': {
      const { usageCommand } = await import('./commands/usage.js');
      return usageCommand(commandTarget(adminFlags), action === undefined ? [] : [action, ...rest], {
        json: values.json ?? false,
        ...(tenant !== undefined ? { tenant } : {}),
        ...(values.since !== undefined ? { since: values.since } : {}),
        ...(values.until !== undefined ? { until: values.until } : {}),
      });
    }
    case 'drill': {
      if (action !== undefined) throw new CliError('usage: keywarden drill [--json]', EXIT_USAGE);
      const { drillCommand } = await import('./commands/incident.js');
      return drillCommand({ json: values.json ?? false });
    }
    default:
      throw new CliError(`unknown command "${command.slice(0, 40)}"\n${USAGE}`, EXIT_USAGE);
  }
}
