/**
 * URL input: one GET with node:http/https, following up to MAX_REDIRECTS redirects.
 * `user:password@` in the URL becomes basic auth (and never appears in names or messages);
 * it is dropped when a redirect leaves the origin. `--header "Name: value"` entries are sent
 * on every request. Content-Length gives `rawSize`, and a body that ends short of it is a
 * truncation error rather than a silent EOF.
 */
import type * as Http from 'node:http';
import { InputError, UsageError } from '../errors';
import { errorText } from './decoder';
import { type RawSource, ShortReadError } from './raw-pump';

export const MAX_REDIRECTS = 5;
/** Time allowed for connecting and receiving the response head. */
export const HTTP_HEAD_TIMEOUT_MS = 120_000;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
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

export async function openHttp(spec: string, headerList?: readonly string[]): Promise<RawSource> {
  const name = redactUrl(spec);
  let url: URL;
  try {
    url = new URL(spec);
  } catch (err) {
    throw httpError(`invalid URL`, name, err);
  }
  const extraHeaders = parseHeaders(headerList);
  let authorization = basicAuth(url);

  for (let redirects = 0; ; redirects++) {
    const shown = redactUrl(url);
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...extraHeaders };
    if (authorization && !Object.keys(extraHeaders).some((h) => h.toLowerCase() === 'authorization')) {
      headers.authorization = authorization;
    }
    const { request, response } = await get(url, headers, name);
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
      // Credentials go only where the user sent them (or where the new URL names its own).
      if (next.username || next.password) authorization = basicAuth(next);
      else if (next.origin !== url.origin) authorization = undefined;
      url = next;
      continue;
    }
    if (status >= 400 || status < 200 || status >= 300) {
      response.destroy();
      request.destroy();
      const what = status >= 400 ? `HTTP ${status} ${response.statusMessage ?? ''}`.trimEnd() : `unexpected HTTP ${status} ${response.statusMessage ?? ''}`.trimEnd();
      throw httpError(`${what} from ${shown}`, name);
    }

    const lengthHeader = response.headers['content-length'];
    const length = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    let released: Promise<void> | undefined;
    return {
      name,
      stream: response,
      rawSize: length,
      expectedBytes: length,
      mapError: (err, bytesRead) => {
        const e = err as NodeJS.ErrnoException;
        if (err instanceof ShortReadError || e?.code === 'ECONNRESET' || e?.message === 'aborted') {
          const of = length !== undefined ? ` of ${length}` : '';
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

function get(
  url: URL,
  headers: Record<string, string>,
  input: string,
): Promise<{ request: Http.ClientRequest; response: Http.IncomingMessage }> {
  const bare = new URL(url.toString());
  bare.username = '';
  bare.password = '';
  const shown = bare.toString();
  // Required here, not at the top: most runs read files (see the lazy-require note in cli/main.ts).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = (bare.protocol === 'https:' ? require('node:https') : require('node:http')) as typeof Http;
  return new Promise((resolve, reject) => {
    const request = lib.get(bare, { headers });
    request.setTimeout(HTTP_HEAD_TIMEOUT_MS, () => {
      request.destroy(new Error(`no response within ${HTTP_HEAD_TIMEOUT_MS / 1000} s`));
    });
    request.once('error', (err) => reject(httpError(`${errorText(err)} (${shown})`, input, err)));
    request.once('response', (response) => {
      // Only the wait for the head is timed: a body paused by backpressure is not idle.
      request.setTimeout(0);
      // Later request errors surface through the response stream.
      request.on('error', () => {});
      resolve({ request, response });
    });
  });
}
