import { describe, expect, it } from "vitest";
import { base32Decode, hotp, totp } from "./totp";

// RFC 6238 appendix B (SHA-1 key "12345678901234567890") and RFC 4226 appendix D.
describe("totp", () => {
  const key = Buffer.from("12345678901234567890");
  const b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
  it("decodes base32", () => {
    expect(base32Decode(b32).equals(key)).toBe(true);
  });
  it("matches RFC 4226 HOTP values", () => {
    expect(hotp(key, 0n)).toBe("755224");
    expect(hotp(key, 9n)).toBe("520489");
  });
  it("matches RFC 6238 TOTP values", () => {
    expect(totp(b32, 59_000, 8)).toBe("94287082");
    expect(totp(b32, 1_111_111_109_000, 8)).toBe("07081804");
    expect(totp(b32, 20_000_000_000_000, 8)).toBe("65353130");
  });
});
