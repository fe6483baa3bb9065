-- The issuer of the subject an access token was issued for (the identity provider of the
-- subject token, the assertion, or the sign-in), so an administrator can revoke everything
-- derived from one issuer's tokens when that issuer is compromised. NULL for tokens issued
-- before this column existed.
ALTER TABLE issued_tokens ADD COLUMN subject_issuer TEXT;
