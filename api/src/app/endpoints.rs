//! Webhook endpoints and the events sent to them: registered, changed, removed, retried.
