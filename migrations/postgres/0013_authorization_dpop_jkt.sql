-- The `dpop_jkt` authorization request parameter (RFC 9449 §10): the RFC 7638 thumbprint of the
-- DPoP key the client will prove when it redeems the code. Kept with the pending request and
-- copied to its code; NULL: the request named no key, and the code is not bound.
ALTER TABLE authorization_requests ADD COLUMN dpop_jkt TEXT;
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
