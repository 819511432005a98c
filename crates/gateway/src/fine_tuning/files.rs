//! OpenAI's files API: uploads kept under `<data dir>/files/` (the bytes as
//! `<id>`, what OpenAI lists of them as `<id>.json`), with training files
//! (purpose `fine-tune`) checked line by line at upload.

use super::{FtError, authorize, limit, page, respond, write_atomic};
use crate::Gateway;
use axum::{
    body::Body,
    extract::{Multipart, Path, Query, State, multipart::MultipartRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::{path::PathBuf, sync::Arc};
use zg_core::now_unix;

/// The largest file accepted, in bytes.
pub(super) const MAX_BYTES: usize = 64 << 20;

/// The purposes OpenAI takes; only `fine-tune` files are read here.
const PURPOSES: [&str; 6] = [
    "fine-tune",
    "assistants",
    "batch",
    "vision",
    "user_data",
    "evals",
];

/// OpenAI's file object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FileObject {
    pub id: String,
    pub object: String,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub purpose: String,
    pub status: String,
}

fn files_dir(gw: &Gateway) -> Result<PathBuf, FtError> {
    Ok(gw.fine_tuning.dir()?.join("files"))
}

/// The stored file's paths (bytes, listing); an id of another shape is
/// no file here, and never a path outside the folder.
fn paths(gw: &Gateway, id: &str) -> Result<(PathBuf, PathBuf), FtError> {
    let dir = files_dir(gw)?;
    let well_formed = id
        .strip_prefix("file-")
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(not_found(id));
    }
    Ok((dir.join(id), dir.join(format!("{id}.json"))))
}

fn not_found(id: &str) -> FtError {
    FtError::NotFound {
        what: "file",
        id: id.to_owned(),
        list: "/v1/files",
    }
}

/// A stored file's listing.
pub(super) async fn meta(gw: &Gateway, id: &str) -> Result<FileObject, FtError> {
    let (_, meta) = paths(gw, id)?;
    let bytes = match tokio::fs::read(&meta).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(id)),
        Err(e) => return Err(FtError::io("reading", &meta)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| FtError::Io {
        action: "parsing",
        path: meta,
        source: e.into(),
    })
}

/// A stored file's bytes.
pub(super) async fn bytes(gw: &Gateway, id: &str) -> Result<Vec<u8>, FtError> {
    let (data, _) = paths(gw, id)?;
    match tokio::fs::read(&data).await {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(id)),
        Err(e) => Err(FtError::io("reading", &data)(e)),
    }
}

/// A multipart field's bytes, or the files API's own refusal.
async fn field_bytes(field: axum::extract::multipart::Field<'_>) -> Result<Vec<u8>, FtError> {
    match field.bytes().await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(None)),
        Err(e) => Err(FtError::invalid(
            format!("the upload broke off or is not valid multipart/form-data: {e}"),
            "file",
        )),
    }
}

fn too_large(got: Option<usize>) -> FtError {
    let got = got.map_or("more".into(), |n| format!("{n} bytes"));
    FtError::TooLarge(format!(
        "the file is {got}, this gateway takes files up to {MAX_BYTES} bytes (64 MiB): split the data into smaller files"
    ))
}

/// `POST /v1/files`: multipart `file` and `purpose`.
pub(super) async fn upload(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        let dir = files_dir(&gw)?;
        let mut form = form.map_err(|e| {
            FtError::invalid(
                format!("upload a file as multipart/form-data with fields `file` and `purpose`: {e}"),
                "file",
            )
        })?;
        let (mut file, mut purpose) = (None, None);
        loop {
            let field = match form.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(too_large(None));
                }
                Err(e) => {
                    return Err(FtError::invalid(
                        format!("the body is not valid multipart/form-data: {e}"),
                        "file",
                    ));
                }
            };
            match field.name() {
                Some("file") => {
                    let name = field.file_name().unwrap_or("upload.jsonl").to_owned();
                    file = Some((name, field_bytes(field).await?));
                }
                Some("purpose") => {
                    let text = String::from_utf8_lossy(&field_bytes(field).await?).into_owned();
                    purpose = Some(text.trim().to_owned());
                }
                _ => {}
            }
        }
        let Some((filename, bytes)) = file else {
            return Err(FtError::invalid("the form has no `file` field", "file"));
        };
        let Some(purpose) = purpose else {
            return Err(FtError::invalid(
                "the form has no `purpose` field: give \"fine-tune\" for training data",
                "purpose",
            ));
        };
        if !PURPOSES.contains(&purpose.as_str()) {
            return Err(FtError::invalid(
                format!("purpose {purpose:?} is not one of {}", PURPOSES.join(", ")),
                "purpose",
            ));
        }
        if bytes.len() > MAX_BYTES {
            return Err(too_large(Some(bytes.len())));
        }
        if purpose == "fine-tune" {
            zg_finetune::Dataset::parse(&bytes).map_err(|e| {
                FtError::invalid(
                    format!("{filename} is not a fine-tuning file (one {{\"messages\": [...]}} per line, ending with the assistant's answer): {e}"),
                    "file",
                )
            })?;
        }
        // The clock first, so that ids list in upload order within a second.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let id = format!(
            "file-{nanos:016x}{}",
            hex::encode(rand::random::<[u8; 4]>())
        );
        let object = FileObject {
            id: id.clone(),
            object: "file".into(),
            bytes: bytes.len() as u64,
            created_at: now_unix(),
            filename,
            purpose,
            status: "processed".into(),
        };
        // The bytes first: a listing never names a file that is not there.
        write_atomic(&dir.join(&id), &bytes).await?;
        let listing = serde_json::to_vec_pretty(&object).map_err(|e| FtError::Io {
            action: "encoding the listing of",
            path: dir.join(&id),
            source: e.into(),
        })?;
        write_atomic(&dir.join(format!("{id}.json")), &listing).await?;
        tracing::info!(file = %id, bytes = object.bytes, purpose = %object.purpose, "file uploaded");
        Ok(object)
    }
    .await;
    respond(result)
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    purpose: Option<String>,
    limit: Option<i64>,
    order: Option<String>,
    after: Option<String>,
}

/// `GET /v1/files`: newest first unless `order=asc`.
pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        let limit = limit(q.limit, 10_000, 10_000)?;
        let dir = files_dir(&gw)?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(FtError::io("listing", &dir)(e)),
        };
        let mut files = Vec::new();
        if let Some(entries) = entries.as_mut() {
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(FtError::io("listing", &dir))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_suffix(".json") else {
                    continue;
                };
                match meta(&gw, id).await {
                    Ok(f) if q.purpose.as_ref().is_none_or(|p| *p == f.purpose) => files.push(f),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping a file listing that does not read")
                    }
                }
            }
        }
        files.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if q.order.as_deref() != Some("asc") {
            files.reverse();
        }
        let (data, has_more) = page(files, |f| f.id.clone(), q.after.as_deref(), limit);
        Ok(json!({
            "object": "list",
            "first_id": data.first().map(|f| f.id.clone()),
            "last_id": data.last().map(|f| f.id.clone()),
            "has_more": has_more,
            "data": data,
        }))
    }
    .await;
    respond(result)
}

/// `GET /v1/files/{id}`.
pub(super) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        meta(&gw, &id).await
    }
    .await;
    respond(result)
}

/// `GET /v1/files/{id}/content`: the bytes as uploaded.
pub(super) async fn content(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        bytes(&gw, &id).await
    }
    .await;
    match result {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Body::from(bytes),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/files/{id}`.
pub(super) async fn delete(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        meta(&gw, &id).await?;
        let (data, listing) = paths(&gw, &id)?;
        // The listing first: a file half deleted is no longer listed.
        for path in [listing, data] {
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(FtError::io("removing", &path)(e));
                }
                _ => {}
            }
        }
        Ok(json!({ "id": id, "object": "file", "deleted": true }))
    }
    .await;
    respond(result)
}
