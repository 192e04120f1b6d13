//! A customer's export as a stream: the document is written a page of rows at a time, each
//! page read by one short statement (`persistence::customer_data::export_page`), so an export
//! of any size holds no statement, lock or connection while the client reads, and no more than
//! a page in memory. The chunks are plain text; the edge turns them into the answer's body.

use futures_util::Stream;
use persistence::Db;
use persistence::customer_data::{EXPORT_SECTIONS, ExportCursor, export_page};
use serde_json::Value as JsonValue;
use uuid::Uuid;

use crate::app::AppError;

/// Rows per page (and per chunk of the answer).
const PAGE: u32 = 1000;

struct Export {
    db: Db,
    org_id: i64,
    customer_id: Uuid,
    /// What to write first: the opening of the document with the customer row.
    head: Option<String>,
    /// The closing field (`exportedAt`), written after the last section.
    tail: Option<String>,
    section: usize,
    after: Option<ExportCursor>,
    /// Whether the current section's array has been opened, and has a row in it.
    opened: bool,
    rows: bool,
}

/// The export document of a customer whose row is `customer`: `{"customer", <sections>,
/// "exportedAt"}`. A failure while reading ends the stream with an error (the answer is then cut
/// short, and is not valid JSON), after logging it.
pub fn stream(
    db: Db,
    org_id: i64,
    customer_id: Uuid,
    customer: JsonValue,
    exported_at: String,
) -> impl Stream<Item = Result<String, AppError>> {
    let state = Export {
        db,
        org_id,
        customer_id,
        head: Some(format!("{{\"customer\":{customer}")),
        tail: Some(format!(
            ",\"exportedAt\":{}}}",
            JsonValue::String(exported_at)
        )),
        section: 0,
        after: None,
        opened: false,
        rows: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if let Some(head) = st.head.take() {
            return Some((Ok(head), st));
        }
        let Some(name) = EXPORT_SECTIONS.get(st.section) else {
            let tail = st.tail.take()?;
            return Some((Ok(tail), st));
        };
        let mut out = String::new();
        if !st.opened {
            out.push_str(&format!(",\"{name}\":["));
            st.opened = true;
        }
        let page = export_page(
            st.db.conn(),
            st.org_id,
            st.customer_id,
            st.section,
            st.after.as_ref(),
            PAGE,
        )
        .await;
        match page {
            Ok((rows, next)) => {
                for row in rows {
                    if st.rows {
                        out.push(',');
                    }
                    st.rows = true;
                    out.push_str(&row.to_string());
                }
                if next.is_none() {
                    out.push(']');
                    st.section += 1;
                    st.opened = false;
                    st.rows = false;
                }
                st.after = next;
                Some((Ok(out), st))
            }
            Err(e) => {
                tracing::error!(error = %e, section = name, "customer export failed");
                st.section = EXPORT_SECTIONS.len();
                st.tail = None;
                Some((Err(AppError::Internal("export failed".into())), st))
            }
        }
    })
}
