//! Results waiting in the staging area — layers not yet kept: shown over the image until kept
//! as a layer (undoably, with the record of what made them) or discarded.

use std::sync::Arc;

use super::layers::LayerKind;
use super::Document;
use crate::engine::image::RgbImage;
use crate::png_info::ImageRecord;

/// A generated image and the record of how it was made.
#[derive(Debug, Clone)]
pub struct StagedResult {
    /// Shared with the canvas, which shows it without a copy.
    pub image: Arc<RgbImage>,
    pub record: ImageRecord,
}

/// The staged results, which one is shown, and whether the original is shown instead.
#[derive(Debug, Default)]
pub(super) struct Staging {
    pub results: Vec<StagedResult>,
    pub index: usize,
    pub show_original: bool,
}

impl Document {
    pub fn stage(&mut self, result: StagedResult) {
        self.staging.results.push(result);
        self.staging.index = self.staging.results.len() - 1;
        self.staging.show_original = false;
        self.touch_image(None);
    }

    pub fn staged(&self) -> &[StagedResult] {
        &self.staging.results
    }

    pub fn staged_index(&self) -> usize {
        self.staging.index
    }

    pub fn show_original(&self) -> bool {
        self.staging.show_original
    }

    /// The staged result being shown, if any (and not flipped to the original).
    pub fn shown_result(&self) -> Option<&StagedResult> {
        if self.staging.show_original {
            return None;
        }
        self.staging.results.get(self.staging.index)
    }

    pub fn select_staged(&mut self, index: usize) {
        if index < self.staging.results.len() {
            self.staging.index = index;
            self.touch_image(None);
        }
    }

    /// Keeps the shown result as a new layer on top, with the record of what made it, and
    /// empties the staging area: one undoable step that keeps the mask (a painter often refines
    /// the same region again). A result of another size than the canvas replaces everything
    /// (undoably). False when nothing is staged or the document holds all the layers it may.
    pub fn accept(&mut self) -> Result<bool, super::layer_ops::LayerError> {
        let Some(result) = self.staging.results.get(self.staging.index).cloned() else {
            return Ok(false);
        };
        if (result.image.width, result.image.height) == self.size() {
            self.add_image_layer(&result.image, Some(result.record))?;
        } else {
            let name = super::layer_ops::layer_name(Some(&result.record));
            let rgba = super::rgb_to_rgba(&result.image);
            let layer = self.new_layer(LayerKind::Result, name, Some(result.record), rgba);
            self.replace_all(result.image.width, result.image.height, vec![layer]);
        }
        self.staging = Staging::default();
        Ok(true)
    }

    pub fn discard(&mut self) {
        self.staging = Staging::default();
        self.touch_image(None);
    }

    /// Flips between the staged result and the original.
    pub fn set_show_original(&mut self, show: bool) {
        self.staging.show_original = show;
        self.touch_image(None);
    }
}
