//! Names of tensors in original (LDM) checkpoints, as AUTOMATIC1111 users keep them, for the
//! diffusers names our model code asks for. Mapping names one by one lets a single file be
//! read lazily, without building a renamed copy of the whole state dict.

use crate::model::config::UNetConfig;

/// Splits `prefix.N.rest` into `(N, rest)`.
fn index_after<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let tail = name.strip_prefix(prefix)?;
    let (n, rest) = tail.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

fn unet_resnet(rest: &str) -> String {
    const MAP: [(&str, &str); 6] = [
        ("norm1.", "in_layers.0."),
        ("conv1.", "in_layers.2."),
        ("time_emb_proj.", "emb_layers.1."),
        ("norm2.", "out_layers.0."),
        ("conv2.", "out_layers.3."),
        ("conv_shortcut.", "skip_connection."),
    ];
    replace_prefix(rest, &MAP)
}

fn replace_prefix(rest: &str, map: &[(&str, &str)]) -> String {
    for (from, to) in map {
        if let Some(tail) = rest.strip_prefix(from) {
            return format!("{to}{tail}");
        }
    }
    rest.to_string()
}

/// diffusers UNet name → LDM name under `model.diffusion_model.`.
pub fn unet_to_ldm(name: &str, cfg: &UNetConfig) -> String {
    let per = cfg.layers_per_block + 1;
    if let Some(rest) = name.strip_prefix("time_embedding.") {
        return replace_prefix(
            rest,
            &[
                ("linear_1.", "time_embed.0."),
                ("linear_2.", "time_embed.2."),
            ],
        );
    }
    if let Some(rest) = name.strip_prefix("conv_in.") {
        return format!("input_blocks.0.0.{rest}");
    }
    if let Some(rest) = name.strip_prefix("conv_norm_out.") {
        return format!("out.0.{rest}");
    }
    if let Some(rest) = name.strip_prefix("conv_out.") {
        return format!("out.2.{rest}");
    }
    if let Some((i, rest)) = index_after(name, "down_blocks.") {
        if let Some((j, rest)) = index_after(rest, "resnets.") {
            return format!("input_blocks.{}.0.{}", i * per + j + 1, unet_resnet(rest));
        }
        if let Some((j, rest)) = index_after(rest, "attentions.") {
            return format!("input_blocks.{}.1.{rest}", i * per + j + 1);
        }
        if let Some(rest) = rest.strip_prefix("downsamplers.0.conv.") {
            return format!("input_blocks.{}.0.op.{rest}", (i + 1) * per);
        }
    }
    if let Some(rest) = name.strip_prefix("mid_block.") {
        if let Some((j, rest)) = index_after(rest, "resnets.") {
            return format!("middle_block.{}.{}", 2 * j, unet_resnet(rest));
        }
        if let Some(rest) = rest.strip_prefix("attentions.0.") {
            return format!("middle_block.1.{rest}");
        }
    }
    if let Some((i, rest)) = index_after(name, "up_blocks.") {
        if let Some((j, rest)) = index_after(rest, "resnets.") {
            return format!("output_blocks.{}.0.{}", i * per + j, unet_resnet(rest));
        }
        if let Some((j, rest)) = index_after(rest, "attentions.") {
            return format!("output_blocks.{}.1.{rest}", i * per + j);
        }
        if let Some(rest) = rest.strip_prefix("upsamplers.0.") {
            let slot = if cfg.up_attention.get(i).copied().unwrap_or(false) {
                2
            } else {
                1
            };
            return format!("output_blocks.{}.{slot}.{rest}", i * per + per - 1);
        }
    }
    name.to_string()
}

/// diffusers VAE name → LDM VAE name (under `first_stage_model.` in a full checkpoint, at the
/// root in a `.vae.pt`). `levels` is the number of resolution levels.
pub fn vae_to_ldm(name: &str, levels: usize) -> String {
    const RESNET: [(&str, &str); 1] = [("conv_shortcut.", "nin_shortcut.")];
    const ATTN: [(&str, &str); 5] = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ];
    for part in ["encoder.", "decoder."] {
        let Some(rest) = name.strip_prefix(part) else {
            continue;
        };
        if let Some(tail) = rest.strip_prefix("conv_norm_out.") {
            return format!("{part}norm_out.{tail}");
        }
        if let Some(rest) = rest.strip_prefix("mid_block.") {
            if let Some((j, tail)) = index_after(rest, "resnets.") {
                return format!("{part}mid.block_{}.{tail}", j + 1);
            }
            if let Some(tail) = rest.strip_prefix("attentions.0.") {
                return format!("{part}mid.attn_1.{}", replace_prefix(tail, &ATTN));
            }
        }
        if let Some((i, rest)) = index_after(rest, "down_blocks.") {
            if let Some((j, tail)) = index_after(rest, "resnets.") {
                return format!("{part}down.{i}.block.{j}.{}", replace_prefix(tail, &RESNET));
            }
            if let Some(tail) = rest.strip_prefix("downsamplers.0.") {
                return format!("{part}down.{i}.downsample.{tail}");
            }
        }
        if let Some((i, rest)) = index_after(rest, "up_blocks.") {
            // LDM numbers decoder levels from the highest resolution; diffusers from the lowest.
            let level = levels.saturating_sub(1 + i);
            if let Some((j, tail)) = index_after(rest, "resnets.") {
                return format!(
                    "{part}up.{level}.block.{j}.{}",
                    replace_prefix(tail, &RESNET)
                );
            }
            if let Some(tail) = rest.strip_prefix("upsamplers.0.") {
                return format!("{part}up.{level}.upsample.{tail}");
            }
        }
    }
    name.to_string()
}

/// Old diffusers folders (before 0.14) name the VAE attention `query/key/value/proj_attn`.
pub fn vae_legacy_attention(name: &str) -> Option<String> {
    const OLD: [(&str, &str); 4] = [
        ("attentions.0.to_q.", "attentions.0.query."),
        ("attentions.0.to_k.", "attentions.0.key."),
        ("attentions.0.to_v.", "attentions.0.value."),
        ("attentions.0.to_out.0.", "attentions.0.proj_attn."),
    ];
    OLD.iter()
        .find(|(new, _)| name.contains(new))
        .map(|(new, old)| name.replacen(new, old, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> UNetConfig {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_attention: vec![true, true, true, false],
            up_attention: vec![false, true, true, true],
            layers_per_block: 2,
            heads: vec![8; 4],
            transformer_layers: 1,
            cross_attention_dim: 768,
            use_linear_projection: false,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
        }
    }

    #[test]
    fn unet_names_follow_the_ldm_layout() {
        let cfg = sd15();
        let cases = [
            ("time_embedding.linear_2.weight", "time_embed.2.weight"),
            ("conv_in.bias", "input_blocks.0.0.bias"),
            (
                "down_blocks.1.resnets.0.conv_shortcut.weight",
                "input_blocks.4.0.skip_connection.weight",
            ),
            (
                "down_blocks.2.attentions.1.proj_in.weight",
                "input_blocks.8.1.proj_in.weight",
            ),
            (
                "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.3.0.op.weight",
            ),
            (
                "down_blocks.3.resnets.1.time_emb_proj.bias",
                "input_blocks.11.0.emb_layers.1.bias",
            ),
            (
                "mid_block.resnets.1.norm2.weight",
                "middle_block.2.out_layers.0.weight",
            ),
            (
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.1.conv.weight",
            ),
            (
                "up_blocks.1.upsamplers.0.conv.weight",
                "output_blocks.5.2.conv.weight",
            ),
            (
                "up_blocks.3.attentions.2.proj_out.bias",
                "output_blocks.11.1.proj_out.bias",
            ),
            (
                "up_blocks.3.resnets.2.conv2.weight",
                "output_blocks.11.0.out_layers.3.weight",
            ),
            ("conv_norm_out.weight", "out.0.weight"),
        ];
        for (diffusers, ldm) in cases {
            assert_eq!(unet_to_ldm(diffusers, &cfg), ldm, "{diffusers}");
        }
    }

    #[test]
    fn vae_names_follow_the_ldm_layout() {
        let cases = [
            (
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                "encoder.down.1.block.0.nin_shortcut.weight",
            ),
            (
                "encoder.down_blocks.2.downsamplers.0.conv.bias",
                "encoder.down.2.downsample.conv.bias",
            ),
            (
                "decoder.up_blocks.0.resnets.2.norm1.weight",
                "decoder.up.3.block.2.norm1.weight",
            ),
            (
                "decoder.up_blocks.2.upsamplers.0.conv.weight",
                "decoder.up.1.upsample.conv.weight",
            ),
            (
                "decoder.mid_block.attentions.0.to_out.0.weight",
                "decoder.mid.attn_1.proj_out.weight",
            ),
            (
                "encoder.mid_block.resnets.1.conv2.weight",
                "encoder.mid.block_2.conv2.weight",
            ),
            ("decoder.conv_norm_out.bias", "decoder.norm_out.bias"),
            ("post_quant_conv.weight", "post_quant_conv.weight"),
        ];
        for (diffusers, ldm) in cases {
            assert_eq!(vae_to_ldm(diffusers, 4), ldm, "{diffusers}");
        }
    }
}
