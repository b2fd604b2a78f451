//! One decoder block, forward and backward: RMSNorm, the q/k/v
//! projections, RoPE, causal attention, the output projection and the
//! residual, then RMSNorm, SwiGLU MLP and the residual again.
//!
//! Kept to the order of the layers; what each layer computes lives in
//! [`super::projection`], [`super::attention`] and [`super::rows`].

use super::Step;
use super::attention::{AttentionScratch, attention_backward, attention_forward};
use super::buffers::{Buffers, Pair};
use super::rows::{rms_norm, rms_norm_backward, rope, swiglu, swiglu_backward};
use crate::error::Result;
use crate::lora::Target;

impl Step<'_, '_> {
    pub(super) fn block_forward(
        &self,
        buf: &mut Buffers,
        pairs: &[Option<Pair>; 7],
        layer: usize,
    ) -> Result<()> {
        let d = self.dims;
        let block = &self.weights.blocks[layer];
        let acts = &mut buf.layers[layer];
        acts.x.copy_from_slice(&buf.resid);
        rms_norm(
            &acts.x,
            block.input_norm,
            self.eps,
            &mut acts.h1,
            &mut acts.rstd1,
        );
        for (target, out) in [
            (Target::QProj, &mut acts.q),
            (Target::KProj, &mut acts.k),
            (Target::VProj, &mut acts.v),
        ] {
            let i = target.index();
            self.project(
                layer,
                target,
                pairs[i].as_ref(),
                &acts.h1,
                out,
                false,
                (&mut acts.lows[i], &mut acts.masks[i]),
                &mut buf.lora.dropped,
            )?;
        }
        rope(&mut acts.q, d.q_width, d, self.weights, false);
        rope(&mut acts.k, d.kv_width, d, self.weights, false);
        attention_forward(
            d,
            (&acts.q, &acts.k, &acts.v),
            &mut acts.probs,
            &mut buf.tasks_q,
            &mut acts.att,
        )?;

        let o = Target::OProj.index();
        acts.x_mid.copy_from_slice(&acts.x);
        self.project(
            layer,
            Target::OProj,
            pairs[o].as_ref(),
            &acts.att,
            &mut acts.x_mid,
            true,
            (&mut acts.lows[o], &mut acts.masks[o]),
            &mut buf.lora.dropped,
        )?;

        rms_norm(
            &acts.x_mid,
            block.post_norm,
            self.eps,
            &mut acts.h2,
            &mut acts.rstd2,
        );
        for (target, out) in [
            (Target::GateProj, &mut acts.gate),
            (Target::UpProj, &mut acts.up),
        ] {
            let i = target.index();
            self.project(
                layer,
                target,
                pairs[i].as_ref(),
                &acts.h2,
                out,
                false,
                (&mut acts.lows[i], &mut acts.masks[i]),
                &mut buf.lora.dropped,
            )?;
        }
        swiglu(&acts.gate, &acts.up, &mut buf.act);
        let down = Target::DownProj.index();
        buf.resid.copy_from_slice(&acts.x_mid);
        self.project(
            layer,
            Target::DownProj,
            pairs[down].as_ref(),
            &buf.act,
            &mut buf.resid,
            true,
            (&mut acts.lows[down], &mut acts.masks[down]),
            &mut buf.lora.dropped,
        )
    }

    /// `buf.d_resid` holds the gradient of the block's output on entry and
    /// of its input on return (not computed for the first block: nothing
    /// below it trains).
    pub(super) fn block_backward(
        &self,
        buf: &mut Buffers,
        pairs: &mut [Option<Pair>; 7],
        layer: usize,
    ) -> Result<()> {
        let d = self.dims;
        let block = &self.weights.blocks[layer];
        let acts = &buf.layers[layer];
        let [
            q_pair,
            k_pair,
            v_pair,
            o_pair,
            gate_pair,
            up_pair,
            down_pair,
        ] = pairs;

        // MLP: resid = x_mid + down(silu(gate) * up).
        swiglu(&acts.gate, &acts.up, &mut buf.act);
        let adapter_input = |target: Target| {
            let i = target.index();
            (&acts.lows[i][..], acts.masks[i])
        };
        self.project_backward(
            layer,
            Target::DownProj,
            down_pair.as_mut(),
            &buf.act,
            adapter_input(Target::DownProj),
            &buf.d_resid,
            Some((buf.d_up.as_mut_slice(), false)),
            &mut buf.lora,
        )?;
        swiglu_backward(&acts.gate, &acts.up, &mut buf.d_gate, &mut buf.d_up);
        for (pair, target, d_out, accumulate) in [
            (gate_pair, Target::GateProj, &buf.d_gate, false),
            (up_pair, Target::UpProj, &buf.d_up, true),
        ] {
            self.project_backward(
                layer,
                target,
                pair.as_mut(),
                &acts.h2,
                adapter_input(target),
                d_out,
                Some((buf.d_h.as_mut_slice(), accumulate)),
                &mut buf.lora,
            )?;
        }
        rms_norm_backward(
            &acts.x_mid,
            &acts.rstd2,
            block.post_norm,
            &buf.d_h,
            &mut buf.d_resid,
        );

        // Attention: x_mid = x + o(attention(rope(q(h1)), rope(k(h1)), v(h1))).
        self.project_backward(
            layer,
            Target::OProj,
            o_pair.as_mut(),
            &acts.att,
            adapter_input(Target::OProj),
            &buf.d_resid,
            Some((buf.d_att.as_mut_slice(), false)),
            &mut buf.lora,
        )?;
        attention_backward(
            d,
            (&acts.q, &acts.k, &acts.v, &acts.probs),
            &buf.d_att,
            AttentionScratch {
                dq: &mut buf.tasks_q,
                dk: &mut buf.tasks_k,
                dv: &mut buf.tasks_v,
                ds: &mut buf.tasks_ds,
            },
            (&mut buf.d_q, &mut buf.d_k, &mut buf.d_v),
        )?;
        rope(&mut buf.d_q, d.q_width, d, self.weights, true);
        rope(&mut buf.d_k, d.kv_width, d, self.weights, true);
        let below = layer > 0;
        for (pair, target, d_out, accumulate) in [
            (q_pair, Target::QProj, &buf.d_q, false),
            (k_pair, Target::KProj, &buf.d_k, true),
            (v_pair, Target::VProj, &buf.d_v, true),
        ] {
            self.project_backward(
                layer,
                target,
                pair.as_mut(),
                &acts.h1,
                adapter_input(target),
                d_out,
                below.then_some((buf.d_h.as_mut_slice(), accumulate)),
                &mut buf.lora,
            )?;
        }
        if below {
            rms_norm_backward(
                &acts.x,
                &acts.rstd1,
                block.input_norm,
                &buf.d_h,
                &mut buf.d_resid,
            );
        }
        Ok(())
    }
}
