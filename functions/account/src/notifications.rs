//! The notification feed: newest first, and marking read.

use agent_credits_domain::Org;
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::{Account, views};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadBody {
    /// The notifications to mark; absent with `all: true` marks every unread one.
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

pub(crate) async fn mark_read(svc: &Account, org: &Org, body: ReadBody) -> Reply {
    let ids = match (body.ids, body.all) {
        (Some(ids), false) if !ids.is_empty() && ids.len() <= 100 => Some(ids),
        (None, true) => None,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidRequest,
                "give either ids (1 to 100) or all: true",
            ));
        }
    };
    if ids
        .as_ref()
        .is_some_and(|ids| ids.iter().any(|i| i.is_empty() || i.len() > 200))
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "an id is empty or too long",
        ));
    }
    let marked = svc.feed.mark_read(&org.id, ids.as_deref()).await?;
    Ok(json_response(StatusCode::OK, &views::Marked { marked }))
}

pub(crate) async fn notifications(svc: &Account, org: &Org) -> Reply {
    let list = svc.feed.notifications(&org.id, 50).await?;
    let view = views::Notifications {
        notifications: list.iter().map(views::NotificationView::from).collect(),
    };
    Ok(json_response(StatusCode::OK, &view))
}
