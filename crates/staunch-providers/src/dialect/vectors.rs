//! The checks every dialect's embeddings answer goes through before it is
//! trusted: each vector of finite numbers, all of one length, the length
//! asked for.

use staunch_core::{Embedding, EmbeddingRequest, ErrorKind, LlmError, Usage};

/// A `MalformedResponse` that says `why`, carrying the tokens billed.
pub(crate) fn malformed(why: String, usage: Usage) -> LlmError {
    LlmError::new(ErrorKind::MalformedResponse, why).with_spent(usage)
}

/// `vectors`, one per input in input order, as the answer's embeddings, or
/// a `MalformedResponse` naming the first fault: a value that is not a
/// finite number, vectors of different lengths, or a length other than the
/// `dimensions` `request` asked for. `answer` names the answer in messages
/// ("the embeddings answer"); `dimensions` names the request's option for
/// the hint when the length is wrong.
pub(crate) fn checked(
    request: &EmbeddingRequest,
    vectors: impl IntoIterator<Item = Vec<f32>>,
    answer: &str,
    dimensions: &str,
    usage: Usage,
) -> Result<Vec<Embedding>, LlmError> {
    let mut data = Vec::with_capacity(request.input.len());
    let mut width = None;
    for (index, vector) in vectors.into_iter().enumerate() {
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(malformed(
                format!("vector {index} of {answer} holds a value that is not a finite number"),
                usage,
            ));
        }
        let want = *width.get_or_insert(vector.len());
        if vector.len() != want {
            return Err(malformed(
                format!(
                    "{answer} mixes vector lengths ({want} and {} at input {index})",
                    vector.len()
                ),
                usage,
            ));
        }
        data.push(Embedding::new(index, vector));
    }
    if let (Some(asked), Some(got)) = (request.dimensions, width)
        && u64::from(asked) != got as u64
    {
        return Err(malformed(
            format!(
                "asked for {asked} dimensions, {answer} has {got} (does the model support \
                 {dimensions}?)"
            ),
            usage,
        ));
    }
    Ok(data)
}
