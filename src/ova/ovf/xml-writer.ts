/**
 * The XML text the OVF dialects are written with: escaping, and a small line writer
 * (indentation, self-closing empty elements). Output bytes depend on every detail here.
 * Escaping is the one shared with ova.xml (src/xva/metadata/xml.ts, XML 1.0 mode).
 */
import { escapeXml } from '../../xva/metadata/xml';

/** Small XML writer: indentation, escaping, self-closing empty elements. */
export class Xml {
  private readonly lines: string[] = [];
  private depth = 0;
  open(tag: string, attrs: Record<string, string | number | undefined> = {}): this {
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}>`);
    this.depth++;
    return this;
  }
  close(tag: string): this {
    this.depth--;
    this.lines.push(`${'  '.repeat(this.depth)}</${tag}>`);
    return this;
  }
  empty(tag: string, attrs: Record<string, string | number | undefined> = {}): this {
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}/>`);
    return this;
  }
  text(tag: string, value: string | number, attrs: Record<string, string | number | undefined> = {}): this {
    const v = escapeXml(String(value));
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}>${v}</${tag}>`);
    return this;
  }
  raw(line: string): this {
    this.lines.push(line);
    return this;
  }
  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function renderAttrs(attrs: Record<string, string | number | undefined>): string {
  let s = '';
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) s += ` ${k}="${escapeXml(String(v))}"`;
  return s;
}
