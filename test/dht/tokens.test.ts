import { describe, expect, test } from "bun:test";
import { TOKEN_BYTES, TOKEN_ROTATE_MS, TokenManager, tokenAddress } from "../../src/dht/tokens.ts";

/** Deterministic, distinct secrets: the n-th call fills its bytes with n. */
function countingRandom(): (n: number) => Uint8Array {
  let calls = 0;
  return (n) => new Uint8Array(n).fill(++calls);
}

const T0 = 1_000_000;

describe("TokenManager", () => {
  test("issue() returns TOKEN_BYTES bytes that check() accepts for the same address", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0);
    expect(token.length).toBe(TOKEN_BYTES);
    expect(tokens.check(token, "192.0.2.1", T0 + 1000)).toBe(true);
  });

  test("check() refuses a token issued to another address", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0);
    expect(tokens.check(token, "192.0.2.2", T0)).toBe(false);
  });

  test("the same address gets the same token within a period, another address a different one", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    expect(tokens.issue("192.0.2.1", T0)).toEqual(tokens.issue("192.0.2.1", T0 + 1));
    expect(tokens.issue("192.0.2.1", T0)).not.toEqual(tokens.issue("192.0.2.2", T0));
  });

  test("a token stays valid after one rotation and is refused after two", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0);
    // Rotation times are T0 + 5 min, T0 + 10 min, ...
    expect(tokens.check(token, "192.0.2.1", T0 + TOKEN_ROTATE_MS - 1)).toBe(true);
    expect(tokens.check(token, "192.0.2.1", T0 + TOKEN_ROTATE_MS)).toBe(true);
    expect(tokens.check(token, "192.0.2.1", T0 + 2 * TOKEN_ROTATE_MS - 1)).toBe(true);
    expect(tokens.check(token, "192.0.2.1", T0 + 2 * TOKEN_ROTATE_MS)).toBe(false);
  });

  test("after one rotation a fresh token differs from the old one and both are valid", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const old = tokens.issue("192.0.2.1", T0);
    const fresh = tokens.issue("192.0.2.1", T0 + TOKEN_ROTATE_MS);
    expect(fresh).not.toEqual(old);
    expect(tokens.check(old, "192.0.2.1", T0 + TOKEN_ROTATE_MS)).toBe(true);
    expect(tokens.check(fresh, "192.0.2.1", T0 + TOKEN_ROTATE_MS)).toBe(true);
  });

  test("a long idle gap retires both secrets at once", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0);
    expect(tokens.check(token, "192.0.2.1", T0 + 10 * TOKEN_ROTATE_MS)).toBe(false);
    const later = tokens.issue("192.0.2.1", T0 + 10 * TOKEN_ROTATE_MS);
    expect(tokens.check(later, "192.0.2.1", T0 + 11 * TOKEN_ROTATE_MS)).toBe(true);
  });

  test("rotateMs sets the rotation period", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom(), rotateMs: 1000 });
    const token = tokens.issue("192.0.2.1", T0);
    expect(tokens.check(token, "192.0.2.1", T0 + 1999)).toBe(true);
    expect(tokens.check(token, "192.0.2.1", T0 + 2000)).toBe(false);
  });

  test("check() refuses tokens of the wrong length, including a prefix of a valid one", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0);
    expect(tokens.check(token.subarray(0, TOKEN_BYTES - 1), "192.0.2.1", T0)).toBe(false);
    expect(tokens.check(new Uint8Array([...token, 0]), "192.0.2.1", T0)).toBe(false);
    expect(tokens.check(new Uint8Array(0), "192.0.2.1", T0)).toBe(false);
  });

  test("check() refuses a token with one byte changed", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("192.0.2.1", T0).slice();
    token[TOKEN_BYTES - 1] = token[TOKEN_BYTES - 1]! ^ 1;
    expect(tokens.check(token, "192.0.2.1", T0)).toBe(false);
  });

  test("tokens from another manager (another secret) are refused", () => {
    const a = new TokenManager({ randomBytes: countingRandom() });
    const b = new TokenManager({ randomBytes: () => new Uint8Array(16).fill(99) });
    expect(b.check(a.issue("192.0.2.1", T0), "192.0.2.1", T0)).toBe(false);
  });

  test("an IPv4-mapped IPv6 address is bound like the plain IPv4 address", () => {
    const tokens = new TokenManager({ randomBytes: countingRandom() });
    const token = tokens.issue("::ffff:192.0.2.1", T0);
    expect(tokens.check(token, "192.0.2.1", T0)).toBe(true);
    expect(tokenAddress("2001:DB8::1")).toBe("2001:db8::1");
  });

  test("the constructor refuses a non-positive rotation period", () => {
    expect(() => new TokenManager({ randomBytes: countingRandom(), rotateMs: 0 })).toThrow(RangeError);
  });
});
