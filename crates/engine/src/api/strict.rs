//! A JSON body extractor that refuses top-level fields the endpoint does not
//! honour: a client that sends `logit_bias` or `best_of` learns at once
//! that it had no effect, instead of getting an answer that ignored it.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ApiError, OpenAiJson, error::invalid_body};

/// A request body with the lists of top-level fields it honours (its own,
/// and those of the parts it flattens in).
pub(crate) trait KnownFields {
    const FIELDS: &'static [&'static [&'static str]];
}

/// Like [`OpenAiJson`], and a field not in `T::FIELDS` is a 400 naming it
/// (a field set to `null` asks for nothing and passes).
pub(crate) struct StrictJson<T>(pub T);

impl<T: DeserializeOwned + KnownFields, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let OpenAiJson(value) = OpenAiJson::<Value>::from_request(req, state).await?;
        let known = T::FIELDS.concat();
        if let Value::Object(fields) = &value
            && let Some((name, _)) = fields
                .iter()
                .find(|(name, v)| !v.is_null() && !known.contains(&name.as_str()))
        {
            let mut err = ApiError::invalid(
                format!(
                    "the field {name:?} is not supported by this engine; it honours {}",
                    known.join(", ")
                ),
                None,
            )
            .with_code("unsupported_parameter");
            err.param = Some(name.clone());
            return Err(err);
        }
        serde_json::from_value(value)
            .map(StrictJson)
            .map_err(invalid_body)
    }
}
