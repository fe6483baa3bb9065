-- The RFC 7638 thumbprint of the DPoP key a public client's refresh token is bound to
-- (RFC 9449 §5): a refresh must come with a proof signed by that key. NULL: not bound (the
-- client is confidential, or used no DPoP when the family began).
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;
