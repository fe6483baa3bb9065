-- The latest claims of every user who signed in through GET /authorize, as the sign-in identity
-- provider's verified ID token carried them (protocol claims such as nonce, aud and exp removed).
-- Rewritten at every sign-in, so a refresh token exchanged for an ID-JAG yields the user's
-- current attributes, not those frozen when the refresh token was issued (IDJAG-ISSUE-12).
-- `subject` is the local subject the refresh tokens carry; rows nobody can use any more (older
-- than the longest refresh-token family) are purged.
CREATE TABLE user_claims (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    claims TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_claims_updated ON user_claims (updated_at);
