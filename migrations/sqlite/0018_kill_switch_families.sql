-- Why a family was marked revoked: NULL when one of its codes or refresh tokens was used again
-- (or revoked at /revoke), 'kill_switch' when an administrator revoked every token of its user,
-- client or identity provider (`revoke_tokens`). The kill switch marks the families of the codes
-- and live refresh tokens it reaches, committed before it revokes them, so that a code redeemed
-- or a refresh token rotated meanwhile — whose new tokens the revocation cannot see yet — finds
-- the mark after storing them and revokes them too (RFC 9700 §4.14.2, REVOKE-05).
ALTER TABLE revoked_families ADD COLUMN cause TEXT;
