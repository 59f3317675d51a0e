import { describe, expect, test } from "bun:test";
import { parseRange } from "../../src/http/range.ts";

describe("parseRange()", () => {
  const cases: [string | null, number, ReturnType<typeof parseRange>][] = [
    [null, 500, { kind: "full" }],
    ["bytes=0-99", 500, { kind: "range", start: 0, end: 99 }],
    ["bytes=100-", 500, { kind: "range", start: 100, end: 499 }],
    ["bytes=-100", 500, { kind: "range", start: 400, end: 499 }],
    ["bytes=-1000", 500, { kind: "range", start: 0, end: 499 }],
    ["bytes=400-9999", 500, { kind: "range", start: 400, end: 499 }],
    ["bytes=500-", 500, { kind: "unsatisfiable" }],
    ["bytes=-0", 500, { kind: "unsatisfiable" }],
    ["bytes=0-", 0, { kind: "unsatisfiable" }],
    ["bytes=9-3", 500, { kind: "full" }],
    ["bytes=0-1,5-9", 500, { kind: "full" }],
    ["items=0-1", 500, { kind: "full" }],
    ["BYTES = 1 - 2", 500, { kind: "range", start: 1, end: 2 }],
  ];
  for (const [header, size, expected] of cases) {
    test(`${JSON.stringify(header)} of ${size} bytes → ${JSON.stringify(expected)}`, () => {
      expect(parseRange(header, size)).toEqual(expected);
    });
  }
});
