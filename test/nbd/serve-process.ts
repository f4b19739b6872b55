/** `xva2img serve` as a child process for tests: started, its start-up JSON read, stopped by a signal. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { BIN, builtDist } from '../cli/_cli';

export interface ServedJson {
  input: string;
  vm: string;
  socket: string | null;
  host: string | null;
  port: number | null;
  exports: Array<{ name: string; ref: string; description: string; size: number; chunks: number; uri: string }>;
  indexBytes: number;
}

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  /** The start-up line (with --json), or the human text. */
  started: string;
  json(): ServedJson;
  stderr(): string;
  /** Sends `signal` and resolves with how the process ended. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts `xva2img serve ...args` and resolves once it printed where it listens (or rejects when it exits first). */
export function startServe(args: string[], timeoutMs = 30_000): Promise<ServeProcess> {
  builtDist();
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    let started = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // Human output is a few lines at once; JSON is one line.
      if (!started && out.includes('\n')) {
        started = true;
        clearTimeout(timer);
        const text = out;
        resolve({
          child,
          started: text,
          json: () => JSON.parse(text.split('\n')[0]!) as ServedJson,
          stderr: () => err,
          stop: async (signal = 'SIGTERM') => {
            child.kill(signal);
            const r = await exited;
            return { ...r, stdout: out, stderr: err };
          },
        });
      }
    });
    void exited.then((r) => {
      if (started) return;
      clearTimeout(timer);
      reject(Object.assign(new Error(`serve exited (${r.code ?? r.signal}) before starting: ${err}`), { code: r.code, stderr: err }));
    });
  });
}
