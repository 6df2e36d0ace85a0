//! LoRA tensor names: parsing them in either layout, and matching the
//! module they name to a model weight.
//!
//! Two layouts are read:
//!
//! - **kohya / A1111**: `lora_unet_<module>.lora_down.weight`,
//!   `.lora_up.weight` and `.alpha`, where `<module>` is the diffusers
//!   module path with every `.` turned into `_`
//!   (`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`),
//!   or for SDXL the LDM module path (`lora_unet_input_blocks_4_1_…`,
//!   translated by `super::sgm`);
//!   text encoders are `lora_te_` (SD 1/2, and SDXL's first), `lora_te1_`
//!   and `lora_te2_` (SDXL).
//! - **diffusers / PEFT**: `unet.<module>.lora_A.weight` / `.lora_B.weight`
//!   (optional `.alpha`), `text_encoder.` and `text_encoder_2.`; also the
//!   older diffusers forms `<module>.lora.down.weight` /
//!   `.lora_linear_layer.down.weight`, and the attention-processor form
//!   `…attn1.processor.to_q_lora.down.weight` (with or without `unet.`).
//!
//! Since a kohya name uses `_` for both separators, it cannot be split back
//! into a path by rule; instead [`NameTable`] lists the model's own weight
//! names in both spellings and looks the LoRA's module up. Text encoders
//! saved with and without transformers' `text_model.` prefix are both
//! matched.

use std::collections::HashMap;

use super::{LoraComponent, LoraLayout};

/// Which tensor of a LoRA module a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `lora_down` / `lora_A`: `[rank, in]` or `[rank, in, kh, kw]`.
    Down,
    /// `lora_up` / `lora_B`: `[out, rank]` or `[out, rank, 1, 1]`.
    Up,
    /// The scalar alpha (scale = alpha / rank).
    Alpha,
}

/// A LoRA key split into what it patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedKey {
    pub component: LoraComponent,
    pub layout: LoraLayout,
    /// The module: `_`-joined for kohya, a dotted diffusers path for PEFT.
    pub module: String,
    pub part: Part,
}

const KOHYA_PREFIXES: [(&str, LoraComponent); 4] = [
    ("lora_unet_", LoraComponent::Unet),
    ("lora_te1_", LoraComponent::TextEncoder),
    ("lora_te2_", LoraComponent::TextEncoder2),
    ("lora_te_", LoraComponent::TextEncoder),
];

const KOHYA_SUFFIXES: [(&str, Part); 3] = [
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".alpha", Part::Alpha),
];

const PEFT_PREFIXES: [(&str, LoraComponent); 3] = [
    ("unet.", LoraComponent::Unet),
    ("text_encoder.", LoraComponent::TextEncoder),
    ("text_encoder_2.", LoraComponent::TextEncoder2),
];

const PEFT_SUFFIXES: [(&str, Part); 7] = [
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora.down.weight", Part::Down),
    (".lora.up.weight", Part::Up),
    (".lora_linear_layer.down.weight", Part::Down),
    (".lora_linear_layer.up.weight", Part::Up),
    (".alpha", Part::Alpha),
];

/// The attention-processor form's projections and the module each is in
/// the UNet and in a CLIP text encoder.
const PROCESSOR_NAMES: [(&str, &str, &str); 4] = [
    ("to_q_lora", "to_q", "q_proj"),
    ("to_k_lora", "to_k", "k_proj"),
    ("to_v_lora", "to_v", "v_proj"),
    ("to_out_lora", "to_out.0", "out_proj"),
];

/// Splits a LoRA key, or `None` when it is in neither layout (or is a
/// tensor of an adapter type other than LoRA: LoHa's `hada_*`, LoKr's
/// `lokr_*`, DoRA's `dora_scale`, a full `diff`).
pub(crate) fn parse(key: &str) -> Option<ParsedKey> {
    parse_kohya(key).or_else(|| parse_peft(key))
}

fn parse_kohya(key: &str) -> Option<ParsedKey> {
    let (rest, component) = KOHYA_PREFIXES
        .iter()
        .find_map(|(p, c)| key.strip_prefix(p).map(|r| (r, *c)))?;
    let (module, part) = KOHYA_SUFFIXES
        .iter()
        .find_map(|(s, part)| rest.strip_suffix(s).map(|m| (m, *part)))?;
    (!module.is_empty() && !module.contains('.')).then(|| ParsedKey {
        component,
        layout: LoraLayout::Kohya,
        module: module.to_string(),
        part,
    })
}

fn parse_peft(key: &str) -> Option<ParsedKey> {
    let (rest, component) = PEFT_PREFIXES
        .iter()
        .find_map(|(p, c)| key.strip_prefix(p).map(|r| (r, *c)))
        // The oldest attention-processor files have no component prefix.
        .or_else(|| {
            key.contains(".processor.")
                .then_some((key, LoraComponent::Unet))
        })?;
    if let Some(parsed) = parse_processor(rest, component) {
        return Some(parsed);
    }
    let (module, part) = PEFT_SUFFIXES
        .iter()
        .find_map(|(s, part)| rest.strip_suffix(s).map(|m| (m, *part)))?;
    (!module.is_empty()).then(|| ParsedKey {
        component,
        layout: LoraLayout::Peft,
        module: module.to_string(),
        part,
    })
}

/// `…attn1.processor.to_q_lora.down.weight` (UNet) or
/// `…self_attn.to_q_lora.down.weight` (text encoder): diffusers' attention
/// processors before PEFT.
fn parse_processor(rest: &str, component: LoraComponent) -> Option<ParsedKey> {
    let (head, part) = [(".down.weight", Part::Down), (".up.weight", Part::Up)]
        .iter()
        .find_map(|(s, part)| rest.strip_suffix(s).map(|m| (m, *part)))?;
    let (parent, leaf) = head.rsplit_once('.')?;
    let (_, unet_name, text_name) = PROCESSOR_NAMES.iter().find(|(n, _, _)| *n == leaf)?;
    let parent = parent.strip_suffix(".processor").unwrap_or(parent);
    let name = if component == LoraComponent::Unet {
        unet_name
    } else {
        text_name
    };
    Some(ParsedKey {
        component,
        layout: LoraLayout::Peft,
        module: format!("{parent}.{name}"),
        part,
    })
}

/// A model component's weight names, to find the weight a LoRA module
/// patches in either spelling.
pub(crate) struct NameTable {
    /// Dotted module path → weight tensor name.
    dotted: HashMap<String, String>,
    /// `_`-joined module path → weight tensor name, `None` where two
    /// weights share a spelling (never matched, so never guessed).
    flat: HashMap<String, Option<String>>,
}

impl NameTable {
    /// The table of `names` (a component's tensor names). Text encoders
    /// also answer to their paths with `text_model.` added or removed.
    pub(crate) fn new<'a>(names: impl Iterator<Item = &'a str>, text: bool) -> Self {
        let mut dotted = HashMap::new();
        let mut flat: HashMap<String, Option<String>> = HashMap::new();
        for name in names {
            let Some(module) = name.strip_suffix(".weight") else {
                continue;
            };
            let mut forms = vec![module.to_string()];
            if text {
                forms.push(match module.strip_prefix("text_model.") {
                    Some(inner) => inner.to_string(),
                    None => format!("text_model.{module}"),
                });
            }
            for form in forms {
                flat.entry(form.replace('.', "_"))
                    .and_modify(|slot| {
                        if slot.as_deref() != Some(name) {
                            *slot = None;
                        }
                    })
                    .or_insert_with(|| Some(name.to_string()));
                dotted.insert(form, name.to_string());
            }
        }
        Self { dotted, flat }
    }

    /// The weight tensor `module` (as parsed in `layout`) patches.
    pub(crate) fn lookup(&self, module: &str, layout: LoraLayout) -> Option<&str> {
        match layout {
            LoraLayout::Kohya => self.flat.get(module)?.as_deref(),
            LoraLayout::Peft => self.dotted.get(module).map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(component: LoraComponent, layout: LoraLayout, module: &str, part: Part) -> ParsedKey {
        ParsedKey {
            component,
            layout,
            module: module.into(),
            part,
        }
    }

    #[test]
    fn kohya_keys_name_their_component_module_and_part() {
        use LoraComponent::*;
        use LoraLayout::Kohya;
        assert_eq!(
            parse("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"),
            Some(key(
                Unet,
                Kohya,
                "down_blocks_0_attentions_0_proj_in",
                Part::Down
            ))
        );
        assert_eq!(
            parse("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"),
            Some(key(
                TextEncoder,
                Kohya,
                "text_model_encoder_layers_0_mlp_fc1",
                Part::Alpha
            ))
        );
        assert_eq!(
            parse("lora_te2_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight"),
            Some(key(
                TextEncoder2,
                Kohya,
                "text_model_encoder_layers_1_self_attn_q_proj",
                Part::Up
            ))
        );
        assert_eq!(parse("lora_unet_mid_block_resnets_0_conv1.hada_w1_a"), None);
        assert_eq!(
            parse("lora_unet_mid_block_resnets_0_conv1.dora_scale"),
            None
        );
    }

    #[test]
    fn peft_and_older_diffusers_keys_are_read() {
        use LoraComponent::*;
        use LoraLayout::Peft;
        let attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
        assert_eq!(
            parse(&format!("unet.{attn}.to_q.lora_A.weight")),
            Some(key(Unet, Peft, &format!("{attn}.to_q"), Part::Down))
        );
        assert_eq!(
            parse("text_encoder_2.text_model.encoder.layers.0.mlp.fc2.lora_B.weight"),
            Some(key(
                TextEncoder2,
                Peft,
                "text_model.encoder.layers.0.mlp.fc2",
                Part::Up
            ))
        );
        assert_eq!(
            parse(&format!("unet.{attn}.processor.to_out_lora.up.weight")),
            Some(key(Unet, Peft, &format!("{attn}.to_out.0"), Part::Up))
        );
        assert_eq!(
            parse(&format!("{attn}.processor.to_k_lora.down.weight")),
            Some(key(Unet, Peft, &format!("{attn}.to_k"), Part::Down))
        );
        assert_eq!(
            parse("text_encoder.text_model.encoder.layers.0.self_attn.to_v_lora.down.weight"),
            Some(key(
                TextEncoder,
                Peft,
                "text_model.encoder.layers.0.self_attn.v_proj",
                Part::Down
            ))
        );
        assert_eq!(parse("unet.conv_in.weight"), None);
        assert_eq!(parse("model.diffusion_model.out.0.weight"), None);
    }

    #[test]
    fn the_table_matches_both_spellings_and_never_guesses_between_two() {
        let names = [
            "encoder.layers.0.self_attn.q_proj.weight",
            "encoder.layers.0.self_attn.q_proj.bias",
            "a.b_c.weight",
            "a_b.c.weight",
        ];
        let table = NameTable::new(names.into_iter(), true);
        let want = Some("encoder.layers.0.self_attn.q_proj.weight");
        assert_eq!(
            table.lookup(
                "text_model_encoder_layers_0_self_attn_q_proj",
                LoraLayout::Kohya
            ),
            want
        );
        assert_eq!(
            table.lookup("encoder_layers_0_self_attn_q_proj", LoraLayout::Kohya),
            want
        );
        assert_eq!(
            table.lookup(
                "text_model.encoder.layers.0.self_attn.q_proj",
                LoraLayout::Peft
            ),
            want
        );
        assert_eq!(table.lookup("a_b_c", LoraLayout::Kohya), None);
        assert_eq!(
            table.lookup("a.b_c", LoraLayout::Peft),
            Some("a.b_c.weight")
        );
    }
}
