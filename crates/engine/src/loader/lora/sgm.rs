//! kohya's SDXL UNet names: the LDM/SGM module layout
//! (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`), which kohya's
//! sd-scripts train SDXL on, translated to diffusers' paths
//! (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`).
//!
//! The LDM UNet lists its layers flat: `input_blocks[0]` is `conv_in`;
//! then, for each down block, `layers_per_block` entries of
//! `[resnet, attention?]` and (except after the last block) one
//! `[downsample]`; `middle_block` is `[resnet, attention, resnet]`;
//! `output_blocks` has `layers_per_block + 1` entries per up block of
//! `[resnet, attention?, upsample?]`. The block and layer counts and which
//! blocks have attention are read from the model's own weight names, so no
//! config is needed. Inside a resnet, `in_layers.2`, `emb_layers.1`,
//! `out_layers.3` and `skip_connection` are diffusers' `conv1`,
//! `time_emb_proj`, `conv2` and `conv_shortcut` (and the norms likewise);
//! a spatial transformer's inner names are the same in both.
//!
//! The mapping follows the layout of diffusers' `UNet2DConditionModel`
//! against SGM's `UNetModel` (see diffusers'
//! `scripts/convert_original_stable_diffusion_to_diffusers.py`); it is
//! written from that description, not copied.

/// The shape of a diffusers UNet, read from its weight names.
pub(crate) struct UnetLayout {
    /// Resnets per down block (`layers_per_block`).
    layers: usize,
    /// Whether each down block has attentions.
    down_attn: Vec<bool>,
    /// Whether each up block has attentions.
    up_attn: Vec<bool>,
}

impl UnetLayout {
    /// The layout of the UNet whose weights are `names`, or `None` when
    /// they are not an SDXL-like diffusers UNet's (with the `add_embedding`
    /// of SDXL's size conditioning): kohya uses LDM names for SDXL only,
    /// and on an SD 1.x UNet some would land on layers of the same shape.
    pub(crate) fn new(names: &[&str]) -> Option<Self> {
        if !names.contains(&"add_embedding.linear_1.weight") {
            return None;
        }
        let count = |prefix: &str| -> usize {
            names
                .iter()
                .filter_map(|n| {
                    n.strip_prefix(prefix)?
                        .split('.')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .max()
                .map_or(0, |m| m + 1)
        };
        let blocks = count("down_blocks.");
        let layers = count("down_blocks.0.resnets.");
        if blocks == 0 || layers == 0 {
            return None;
        }
        let has = |prefix: String| names.iter().any(|n| n.starts_with(&prefix));
        Some(Self {
            layers,
            down_attn: (0..blocks)
                .map(|b| has(format!("down_blocks.{b}.attentions.")))
                .collect(),
            up_attn: (0..count("up_blocks."))
                .map(|b| has(format!("up_blocks.{b}.attentions.")))
                .collect(),
        })
    }

    /// The diffusers module, `_`-joined, for a kohya SGM module
    /// (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`), or `None`
    /// when it is not one.
    pub(crate) fn to_diffusers(&self, module: &str) -> Option<String> {
        let fixed = [
            ("input_blocks_0_0", "conv_in"),
            ("time_embed_0", "time_embedding_linear_1"),
            ("time_embed_2", "time_embedding_linear_2"),
            ("label_emb_0_0", "add_embedding_linear_1"),
            ("label_emb_0_2", "add_embedding_linear_2"),
            ("out_0", "conv_norm_out"),
            ("out_2", "conv_out"),
        ];
        if let Some((_, to)) = fixed.iter().find(|(from, _)| *from == module) {
            return Some(to.to_string());
        }
        let per_up = self.layers + 1;
        if let Some(rest) = module.strip_prefix("input_blocks_") {
            let (k, j, inner) = two_indices(rest)?;
            let (b, l) = ((k.checked_sub(1)?) / per_up, (k - 1) % per_up);
            let head = match (l == self.layers, j) {
                (true, 0) => {
                    return (inner == "op").then(|| format!("down_blocks_{b}_downsamplers_0_conv"));
                }
                (false, 0) => return resnet(format!("down_blocks_{b}_resnets_{l}"), inner),
                (false, 1) if *self.down_attn.get(b)? => format!("down_blocks_{b}_attentions_{l}"),
                _ => return None,
            };
            return joined(head, inner);
        }
        if let Some(rest) = module.strip_prefix("middle_block_") {
            let (j, inner) = one_index(rest)?;
            return match j {
                0 => resnet("mid_block_resnets_0".into(), inner),
                1 => joined("mid_block_attentions_0".into(), inner),
                2 => resnet("mid_block_resnets_1".into(), inner),
                _ => None,
            };
        }
        let rest = module.strip_prefix("output_blocks_")?;
        let (k, j, inner) = two_indices(rest)?;
        let (u, l) = (k / per_up, k % per_up);
        let attn = *self.up_attn.get(u)?;
        match j {
            0 => resnet(format!("up_blocks_{u}_resnets_{l}"), inner),
            1 if attn => joined(format!("up_blocks_{u}_attentions_{l}"), inner),
            // The upsampler follows the resnet (and the attention, if any)
            // of each up block's last layer but the last block's.
            _ if j == 1 + usize::from(attn)
                && l == self.layers
                && u + 1 < self.up_attn.len()
                && inner == "conv" =>
            {
                Some(format!("up_blocks_{u}_upsamplers_0_conv"))
            }
            _ => None,
        }
    }
}

/// A resnet's inner module in diffusers' names.
fn resnet(head: String, inner: &str) -> Option<String> {
    let name = match inner {
        "in_layers_0" => "norm1",
        "in_layers_2" => "conv1",
        "emb_layers_1" => "time_emb_proj",
        "out_layers_0" => "norm2",
        "out_layers_3" => "conv2",
        "skip_connection" => "conv_shortcut",
        _ => return None,
    };
    Some(format!("{head}_{name}"))
}

fn joined(head: String, inner: &str) -> Option<String> {
    (!inner.is_empty()).then(|| format!("{head}_{inner}"))
}

/// `4_1_rest` → (4, 1, "rest"); `0_0` → (0, 0, "").
fn two_indices(s: &str) -> Option<(usize, usize, &str)> {
    let (k, rest) = one_index(s)?;
    let (j, rest) = one_index(rest)?;
    Some((k, j, rest))
}

/// `4_rest` → (4, "rest"); `4` → (4, "").
fn one_index(s: &str) -> Option<(usize, &str)> {
    let (num, rest) = s.split_once('_').unwrap_or((s, ""));
    Some((num.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDXL's real layout: 3 blocks of 2 layers, attention in the last two
    /// down blocks and the first two up blocks.
    fn sdxl() -> UnetLayout {
        UnetLayout {
            layers: 2,
            down_attn: vec![false, true, true],
            up_attn: vec![true, true, false],
        }
    }

    #[test]
    fn sdxl_sgm_names_map_to_diffusers_names() {
        let l = sdxl();
        let cases = [
            ("input_blocks_0_0", "conv_in"),
            (
                "input_blocks_1_0_in_layers_2",
                "down_blocks_0_resnets_0_conv1",
            ),
            ("input_blocks_3_0_op", "down_blocks_0_downsamplers_0_conv"),
            (
                "input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
            ),
            (
                "input_blocks_4_0_skip_connection",
                "down_blocks_1_resnets_0_conv_shortcut",
            ),
            (
                "input_blocks_8_1_proj_out",
                "down_blocks_2_attentions_1_proj_out",
            ),
            ("middle_block_1_proj_in", "mid_block_attentions_0_proj_in"),
            (
                "middle_block_2_emb_layers_1",
                "mid_block_resnets_1_time_emb_proj",
            ),
            (
                "output_blocks_2_1_transformer_blocks_9_ff_net_2",
                "up_blocks_0_attentions_2_transformer_blocks_9_ff_net_2",
            ),
            ("output_blocks_2_2_conv", "up_blocks_0_upsamplers_0_conv"),
            ("output_blocks_5_2_conv", "up_blocks_1_upsamplers_0_conv"),
            (
                "output_blocks_8_0_out_layers_3",
                "up_blocks_2_resnets_2_conv2",
            ),
            ("label_emb_0_2", "add_embedding_linear_2"),
        ];
        for (sgm, diffusers) in cases {
            assert_eq!(l.to_diffusers(sgm).as_deref(), Some(diffusers), "{sgm}");
        }
        for bad in [
            "input_blocks_1_1_proj_in",
            "output_blocks_8_1_conv",
            "down_blocks_0_resnets_0_conv1",
            "input_blocks_x_0",
        ] {
            assert_eq!(l.to_diffusers(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_layout_is_read_from_weight_names() {
        let names = [
            "add_embedding.linear_1.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.resnets.1.conv1.weight",
            "down_blocks.1.resnets.0.conv1.weight",
            "down_blocks.1.attentions.0.proj_in.weight",
            "up_blocks.0.attentions.0.proj_in.weight",
            "up_blocks.1.resnets.0.conv1.weight",
        ];
        let l = UnetLayout::new(&names).unwrap();
        assert_eq!(
            (l.layers, l.down_attn, l.up_attn),
            (2, vec![false, true], vec![true, false])
        );
        assert!(UnetLayout::new(&names[1..]).is_none(), "SD 1.x");
    }
}
