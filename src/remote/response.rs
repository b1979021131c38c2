//! A server's answer to txt2img/img2img as the job's results: the images, each with the record
//! a Pentimento server wrote into it, or (from another server) the record of the job we sent
//! with the model the server names.

use serde_json::Value;

use super::ServerKind;
use crate::engine::job::{Generated, Job};
use crate::png_info::ImageRecord;
use crate::server::api::decode_base64;

/// The job's images from the answer's body. AUTOMATIC1111's ControlNet extension appends its
/// detected maps after the batch: only the batch's images are taken.
pub fn results(job: &Job, answer: &Value, server: ServerKind) -> Result<Vec<Generated>, String> {
    let images = answer
        .get("images")
        .and_then(Value::as_array)
        .ok_or("the server's answer holds no images")?;
    if images.len() < job.batch {
        return Err(format!(
            "the server sent {} images for a batch of {}",
            images.len(),
            job.batch
        ));
    }
    images
        .iter()
        .take(job.batch)
        .enumerate()
        .map(|(i, b64)| {
            let b64 = b64.as_str().ok_or("an image that is not base64 text")?;
            let bytes = decode_base64(b64).map_err(|e| e.0)?;
            let image = crate::engine::image::decode_image(&bytes)
                .map_err(|e| format!("the server's image {}: {e}", i + 1))?;
            let record = record_of(job, i, &bytes, server);
            Ok(Generated { image, record })
        })
        .collect()
}

fn record_of(job: &Job, i: usize, png: &[u8], server: ServerKind) -> ImageRecord {
    let info = crate::png_info::parse_image(png);
    if server == ServerKind::Pentimento {
        if let Some(record) = info.as_ref().and_then(|i| i.record.clone()) {
            return record;
        }
    }
    let field = |k: &str| {
        info.as_ref()
            .and_then(|i| i.parameters.get(k))
            .map(str::to_string)
    };
    ImageRecord::for_job_elsewhere(job, field("Model"), field("Model hash"))
        .with_params(job.image_params(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::job::JobKind;
    use crate::engine::params::GenerationParams;
    use crate::server::api::encode_base64;

    fn a1111_png(parameters: &str) -> String {
        let mut out = vec![];
        {
            let mut enc = png::Encoder::new(&mut out, 8, 8);
            enc.set_color(png::ColorType::Rgb);
            enc.add_text_chunk("parameters".into(), parameters.into())
                .unwrap();
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[7u8; 8 * 8 * 3]).unwrap();
        }
        encode_base64(&out)
    }

    #[test]
    fn another_servers_images_get_the_jobs_record_and_its_model() {
        let job = Job::new(
            JobKind::Txt2Img,
            GenerationParams {
                prompt: "a cat".into(),
                seed: 40,
                ..Default::default()
            },
        )
        .with_batch(2);
        let text =
            "a cat\nSteps: 20, Sampler: Euler, Seed: 40, Model: dreamy, Model hash: 0123abcd";
        let answer = serde_json::json!({
            "images": [a1111_png(text), a1111_png(text), a1111_png("a detected map")],
        });
        let got = results(&job, &answer, ServerKind::Automatic1111).unwrap();
        assert_eq!(
            got.len(),
            2,
            "the ControlNet map after the batch is not a result"
        );
        assert_eq!(got[1].params().seed, 41);
        assert_eq!(got[0].record.model.as_deref(), Some("dreamy"));
        assert_eq!(got[0].record.model_hash.as_deref(), Some("0123abcd"));
        assert_eq!(got[0].image.pixels, vec![7u8; 8 * 8 * 3]);
    }

    #[test]
    fn a_short_or_broken_answer_is_an_error() {
        let job = Job::new(JobKind::Txt2Img, GenerationParams::default()).with_batch(2);
        let one = serde_json::json!({"images": [a1111_png("x")]});
        assert!(results(&job, &one, ServerKind::Automatic1111).is_err());
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"images": "no"}),
            serde_json::json!({"images": [1, 2]}),
            serde_json::json!({"images": ["!!!", "!!!"]}),
            serde_json::json!({"images": [encode_base64(b"not a png"), encode_base64(b"x")]}),
        ] {
            assert!(
                results(&job, &bad, ServerKind::Pentimento).is_err(),
                "{bad}"
            );
        }
    }
}
