"""Fake credentials shared by the redaction tests."""

# Fake credentials are assembled at run time so that secret scanners and push protection do
# not flag this file; none of them is a real key.
ALNUM = "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7"
OPENAI_KEY = "sk-" + "proj-" + ALNUM
ANTHROPIC_KEY = "sk-" + "ant-api03-" + ALNUM
GOOGLE_KEY = "AI" + "za" + "Sy" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
STRIPE_KEY = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
AWS_KEY = "AK" + "IA" + "IOSFODNN7EXAMPLE"
GITHUB_TOKEN = "gh" + "p_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0123456789abc_" + "x" * 59
SLACK_TOKEN = "xo" + "xb-" + "2048-4096-AbCdEfGhIjKlMnOp"
JWT = (
    "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "-----END RSA " + "PRIVATE KEY-----"
)
UUID = "550e8400-e29b-41d4-a716-446655440000"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
