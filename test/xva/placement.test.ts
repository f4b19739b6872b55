import { parseChunkName, XVA_CHUNK_SIZE } from '../../src/xva/format';
import { ChunkPlacer } from '../../src/xva/placement';
import { XvaFormatError } from '../../src/errors';

const MiB = XVA_CHUNK_SIZE;

describe('chunk placement (docs/xva-format.md §4.3): numbers are counters, not offsets', () => {
  test('consecutive chunks land back to back', () => {
    const p = new ChunkPlacer('Ref:1', 3 * MiB);
    expect(p.place(0, MiB, 'Ref:1/00000000').offset).toBe(0);
    expect(p.place(1, MiB, 'Ref:1/00000001').offset).toBe(MiB);
    expect(p.place(2, MiB, 'Ref:1/00000002').offset).toBe(2 * MiB);
  });

  test('a gap in the numbers is that many MiB of zeros', () => {
    const p = new ChunkPlacer('Ref:1', 10 * MiB);
    p.place(0, MiB, 'a');
    const next = p.place(5, MiB, 'b');
    expect(next.offset).toBe(5 * MiB);
    expect(next.gapBytes).toBe(4 * MiB);
  });

  test('a zero-length keep-alive consumes a number but no bytes', () => {
    const p = new ChunkPlacer('Ref:1', 10 * MiB);
    p.place(0, MiB, '0'); // data at 0
    p.place(1, 0, '1'); // keep-alive
    // chunk 2 holds the data of offset 1 MiB, not 2 MiB
    expect(p.place(2, MiB, '2').offset).toBe(MiB);
    // a later gap still counts whole MiB from the cursor
    expect(p.place(5, MiB, '5').offset).toBe(4 * MiB);
  });

  test('after k keep-alives the last chunk number is (size-1)/1MiB + k', () => {
    const size = 4 * MiB + 512;
    const p = new ChunkPlacer('Ref:1', size);
    p.place(0, MiB, '');
    p.place(1, 0, '');
    p.place(2, 0, '');
    const last = p.place(4 + 2, 512, '');
    expect(last.offset).toBe(4 * MiB);
    expect(p.position).toBe(size);
  });

  test('a short last chunk ends exactly at the virtual size', () => {
    const p = new ChunkPlacer('Ref:1', MiB + 4096);
    p.place(0, MiB, '');
    expect(p.place(1, 4096, '').offset).toBe(MiB);
    expect(p.position).toBe(MiB + 4096);
  });

  test.each([
    [3, 3, 'repeats'],
    [5, 2, 'goes back'],
  ])('counter %i then %i is an error (%s)', (a, b, word) => {
    const p = new ChunkPlacer('Ref:1', 10 * MiB);
    p.place(a, MiB, `Ref:1/0000000${a}`);
    expect(() => p.place(b, MiB, `Ref:1/0000000${b}`)).toThrow(XvaFormatError);
    expect(() => p.place(b, MiB, `Ref:1/0000000${b}`)).toThrow(new RegExp(word));
  });

  test('a first chunk that is neither 1 MiB nor last sets the gap, as XAPI does, with a warning', () => {
    const warnings: string[] = [];
    const p = new ChunkPlacer('Ref:1', 10 * MiB, (w) => warnings.push(w));
    p.place(0, 512 * 1024, '');
    expect(p.place(2, 512 * 1024, '').offset).toBe(1024 * 1024);
    expect(warnings).toHaveLength(1);
  });

  test('chunk names', () => {
    expect(parseChunkName('Ref:998/00000042')).toEqual({ dir: 'Ref:998', counter: 42, suffix: '' });
    expect(parseChunkName('Ref:998/00000042.xxhash')).toEqual({ dir: 'Ref:998', counter: 42, suffix: '.xxhash' });
    expect(parseChunkName('Ref:1/100000000.checksum')).toEqual({ dir: 'Ref:1', counter: 100000000, suffix: '.checksum' });
    expect(parseChunkName('ova.xml')).toBeUndefined();
    expect(parseChunkName('Ref:1/')).toBeUndefined();
  });
});
