//! API keys: created (the secret shown once), listed and revoked.
