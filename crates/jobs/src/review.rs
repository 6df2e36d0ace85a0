//! Human review: which stored images enter the review queue, and how well
//! the automatic quality score agrees with the reviewers.
//!
//! Every image a moderation or near-copy check flagged enters the queue,
//! and a share `sample_percent` of the others, drawn per image: the
//! image's id is hashed (BLAKE3) into a number in [0, 100) and the image is
//! sampled when it is below the share. The draw is independent of the
//! prompt, the model and the time, so the sampled images are an unbiased
//! sample, and the same image is always drawn the same way.
//!
//! The agreement between the score and the verdicts is the area under the
//! ROC curve of the score as a predictor of `good` (the Mann–Whitney
//! statistic): the probability that a random `good` image scored higher
//! than a random `bad` one, ties counting half. 0.5 means the score says
//! nothing about what reviewers reject; 1.0 that it separates them
//! perfectly.

use easel_store::NewReviewItem;

/// The caller's draw in [0, 100) for image `id`.
pub fn draw(image_id: &str) -> f64 {
    let hash = blake3::hash(image_id.as_bytes());
    let x = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// Why an image enters the queue, if it does: `flagged` when a check
/// flagged it, `sampled` when it is drawn into the share.
pub fn reason(image_id: &str, flagged: bool, sample_percent: f64) -> Option<&'static str> {
    if flagged {
        Some("flagged")
    } else if draw(image_id) < sample_percent {
        Some("sampled")
    } else {
        None
    }
}

/// The queue entries for a stored job's images: `(id, flagged, score)`.
pub fn items(
    job: &easel_store::Job,
    images: &[(String, bool, Option<f32>)],
    sample_percent: f64,
) -> Vec<NewReviewItem> {
    images
        .iter()
        .filter_map(|(id, flagged, score)| {
            let reason = reason(id, *flagged, sample_percent)?;
            Some(NewReviewItem {
                image_id: id.clone(),
                job_id: job.id.to_string(),
                project: job.project.as_str().to_string(),
                model: job.params.model.clone(),
                model_version: job.params.version.clone(),
                quality_score: score.map(f64::from),
                reason,
            })
        })
        .collect()
}

/// The area under the ROC curve of the score predicting `good`, over
/// `(score, good)` pairs; `None` without both a good and a bad verdict.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scored
        .iter()
        .copied()
        .filter(|(s, _)| s.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let good = sorted.iter().filter(|(_, g)| *g).count() as f64;
    let bad = sorted.len() as f64 - good;
    if good == 0.0 || bad == 0.0 {
        return None;
    }
    // Sum of the good items' ranks (ties get their mean rank).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += sorted[i..=j].iter().filter(|(_, g)| *g).count() as f64 * mean_rank;
        i = j + 1;
    }
    Some((rank_sum - good * (good + 1.0) / 2.0) / (good * bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_share_is_honoured_and_flagged_images_always_enter() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("img_{i:08}")).collect();
        let sampled = ids
            .iter()
            .filter(|id| reason(id, false, 10.0).is_some())
            .count();
        // 10 % of 20,000 = 2,000; the binomial's sd is 42.
        assert!((1_850..=2_150).contains(&sampled), "{sampled}");
        assert!(
            ids.iter()
                .all(|id| reason(id, true, 0.0) == Some("flagged"))
        );
        assert!(ids.iter().all(|id| reason(id, false, 0.0).is_none()));
        assert_eq!(reason("img_1", false, 100.0), Some("sampled"));
    }

    #[test]
    fn auc_is_the_chance_a_good_image_outscores_a_bad_one() {
        assert_eq!(
            auc(&[(0.1, false), (0.2, false), (0.3, true), (0.4, true)]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[(0.1, true), (0.2, true), (0.3, false), (0.4, false)]),
            Some(0.0)
        );
        assert_eq!(auc(&[(0.2, true), (0.2, false)]), Some(0.5));
        // One good above both bad, one between them: 3 of 4 pairs.
        assert_eq!(
            auc(&[(0.1, false), (0.2, true), (0.3, false), (0.4, true)]),
            Some(0.75)
        );
        assert_eq!(auc(&[(0.1, true)]), None);
    }
}
