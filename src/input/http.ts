/**
 * URL input: one GET with node:http/https, following up to MAX_REDIRECTS redirects.
 * `user:password@` in the URL becomes basic auth (and never appears in names or messages).
 * `--header "Name: value"` entries are sent on every request, except that credentials (basic
 * auth, and the Authorization, Cookie and Proxy-Authorization headers) go only to the origin
 * they were given for, as curl does, unless `locationTrusted`. Content-Length gives `rawSize`,
 * and a body that ends short of it is a truncation error rather than a silent EOF. A server silent for longer than the timeout (no
 * response head, or a body that stops) fails instead of hanging (docs/design/http-input.md).
 * https connections, and which certificates are trusted, are tls-trust.ts's.
 */
import type * as Http from 'node:http';
import type { Readable } from 'node:stream';
import { InputError, UsageError } from '../errors';
import { errorText } from '../errors';
import { type RawSource, ShortReadError } from './raw-pump';
import { type TlsTrust, resolveTlsTrust, trustedConnection } from './tls-trust';
import { HTTP_MAX_TIMEOUT_MS, type HttpOptions } from './types';

export const MAX_REDIRECTS = 5;
/**
 * Default longest silence from the server (head or body). Generous on purpose: under
 * `use_compression`, XAPI's compressor holds its output until it has megabytes of input, so an
 * export is silent while XAPI scans a long run of empty disk (docs/design/http-input.md).
 */
export const HTTP_DEFAULT_TIMEOUT_MS = 600_000;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials: not sent to another origin after a redirect (lower case). */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);
const USER_AGENT = 'xva2img';

/** True when the input names a URL we fetch. */
export function isUrl(spec: string): boolean {
  return /^https?:\/\//i.test(spec);
}

/** The URL as shown to users: credentials removed. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(url.toString());
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return String(url).replace(/\/\/[^/@]*@/, '//');
  }
}

/** Parses `--header "Name: value"` entries. */
export function parseHeaders(list: readonly string[] = []): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of list) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    if (!name || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new UsageError(`bad --header ${JSON.stringify(line)}: expected "Name: value"`);
    }
    headers[name] = line.slice(colon + 1).trim();
  }
  return headers;
}

function basicAuth(url: URL): string | undefined {
  if (!url.username && !url.password) return undefined;
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  return 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
}

function httpError(message: string, input: string, cause?: unknown): InputError {
  return new InputError('INPUT_HTTP', message, { input }, { cause });
}

/** HttpOptions.timeoutMs, checked; the default when unset. */
function timeoutOf(options: HttpOptions): number {
  const ms = options.timeoutMs ?? HTTP_DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(ms) || ms < 0 || ms > HTTP_MAX_TIMEOUT_MS) throw new UsageError(`HTTP timeout must be a number of milliseconds from 0 (no limit) to ${HTTP_MAX_TIMEOUT_MS}, got ${ms}`);
  return ms;
}

export async function openHttp(spec: string, headerList?: readonly string[], options: HttpOptions = {}): Promise<RawSource> {
  const name = redactUrl(spec);
  let url: URL;
  try {
    url = new URL(spec);
  } catch (err) {
    throw httpError(`invalid URL`, name, err);
  }
  /** The `-H` headers still sent: their credentials go once a redirect leaves their origin. */
  let extraHeaders = parseHeaders(headerList);
  const userSetsAuthorization = Object.keys(extraHeaders).some((h) => h.toLowerCase() === 'authorization');
  const timeoutMs = timeoutOf(options);
  const trust = resolveTlsTrust(options);
  let authorization = basicAuth(url);
  /** Credentials were given and a redirect to another origin left them behind. */
  let credentialsLeftBehind = false;

  for (let redirects = 0; ; redirects++) {
    const shown = redactUrl(url);
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...extraHeaders };
    if (authorization && !userSetsAuthorization) {
      headers.authorization = authorization;
    }
    const { request, response } = await get(url, headers, name, timeoutMs, trust);
    const status = response.statusCode ?? 0;
    const location = response.headers.location;

    if (REDIRECT_STATUSES.has(status) && location) {
      response.destroy();
      request.destroy();
      if (redirects >= MAX_REDIRECTS) throw httpError(`too many redirects (more than ${MAX_REDIRECTS}) from ${shown}`, name);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch (err) {
        throw httpError(`bad redirect location ${JSON.stringify(location)} from ${shown}`, name, err);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw httpError(`redirect to unsupported URL ${redactUrl(next)} from ${shown}`, name);
      }
      // Credentials go only where the user sent them (or where the new URL names its own),
      // unless the user trusts every server of the download with them.
      if (next.origin !== url.origin && !options.locationTrusted) {
        const kept = Object.fromEntries(Object.entries(extraHeaders).filter(([h]) => !CREDENTIAL_HEADERS.has(h.toLowerCase())));
        if (authorization || Object.keys(kept).length < Object.keys(extraHeaders).length) credentialsLeftBehind = true;
        extraHeaders = kept;
        authorization = undefined;
      }
      if (next.username || next.password) authorization = basicAuth(next);
      url = next;
      continue;
    }
    if (status >= 400 || status < 200 || status >= 300) {
      response.destroy();
      request.destroy();
      const what = status >= 400 ? `HTTP ${status} ${response.statusMessage ?? ''}`.trimEnd() : `unexpected HTTP ${status} ${response.statusMessage ?? ''}`.trimEnd();
      const hint = (status === 401 || status === 403) && credentialsLeftBehind ? ' (credentials are not sent to another host after a redirect; --location-trusted sends them)' : '';
      throw httpError(`${what} from ${shown}${hint}`, name);
    }

    const lengthHeader = response.headers['content-length'];
    const length = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    if (timeoutMs > 0) watchIdle(response, timeoutMs);
    let released: Promise<void> | undefined;
    return {
      name,
      stream: response,
      rawSize: length,
      expectedBytes: length,
      mapError: (err, bytesRead) => {
        const e = err as NodeJS.ErrnoException;
        const of = length !== undefined ? ` of ${length}` : '';
        if (err instanceof StalledBodyError) {
          return httpError(`no data from ${shown} for ${err.ms / 1000} s after ${bytesRead}${of} bytes (stalled download; see --http-timeout)`, name, err);
        }
        if (err instanceof ShortReadError || e?.code === 'ECONNRESET' || e?.message === 'aborted') {
          return httpError(`connection closed after ${bytesRead}${of} bytes from ${shown} (truncated download)`, name, err);
        }
        return httpError(`${errorText(err)} from ${shown} after ${bytesRead} bytes`, name, err);
      },
      release: () => {
        if (!released) {
          response.destroy();
          request.destroy();
          released = Promise.resolve();
        }
        return released;
      },
    };
  }
}

/** What the idle watchdog destroys a stalled body with. */
class StalledBodyError extends Error {
  constructor(readonly ms: number) {
    super(`no data for ${ms / 1000} s`);
    this.name = 'StalledBodyError';
  }
}

/**
 * Fails `body` with StalledBodyError when it flows (its reader wants data) and nothing came for
 * `ms`. Time spent paused (backpressure: we are the slow side) does not count. The 'data'
 * listener is added only once the body flows: added earlier, it would start the flow before the
 * body's reader listens, and those bytes would be lost.
 */
function watchIdle(body: Readable, ms: number): void {
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  // A timestamp per chunk, not a timer reset per chunk: the timer, when it fires, waits out the rest.
  const check = (): void => {
    timer = undefined;
    if (body.readableFlowing !== true || body.destroyed) return;
    const left = last + ms - Date.now();
    if (left > 0) timer = setTimeout(check, left);
    else body.destroy(new StalledBodyError(ms));
  };
  const arm = (): void => {
    last = Date.now();
    if (!timer && body.readableFlowing === true && !body.destroyed) timer = setTimeout(check, ms);
  };
  const disarm = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  body.once('resume', () => body.on('data', arm));
  body.on('resume', arm);
  body.on('pause', disarm);
  body.once('end', disarm);
  body.once('close', disarm);
}

function get(
  url: URL,
  headers: Record<string, string>,
  input: string,
  timeoutMs: number,
  trust: TlsTrust,
): Promise<{ request: Http.ClientRequest; response: Http.IncomingMessage }> {
  const bare = new URL(url.toString());
  bare.username = '';
  bare.password = '';
  const shown = bare.toString();
  const https = bare.protocol === 'https:';
  // Required here, not at the top: most runs read files (see the lazy-require note in cli/main.ts).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = (https ? require('node:https') : require('node:http')) as typeof Http;
  const options: Http.RequestOptions = { headers };
  if (https) {
    options.createConnection = trustedConnection(bare, trust, timeoutMs, input) as Http.RequestOptions['createConnection'];
    options.defaultPort = 443;
  }
  return new Promise((resolve, reject) => {
    const request = lib.get(bare, options);
    if (timeoutMs > 0) {
      request.setTimeout(timeoutMs, () => {
        request.destroy(httpError(`no response from ${shown} within ${timeoutMs / 1000} s (see --http-timeout)`, input));
      });
    }
    request.once('error', (err) => reject(err instanceof InputError ? err : httpError(`${errorText(err)} (${shown})`, input, err)));
    request.once('response', (response) => {
      // The body has its own watchdog (watchIdle), which knows a paused body is not idle.
      request.setTimeout(0);
      // Later request errors surface through the response stream.
      request.on('error', () => {});
      resolve({ request, response });
    });
  });
}
