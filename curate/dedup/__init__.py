"""The dedup stage: pHashes, exact/near/semantic/eval-set duplicate clusters -> signals/phash, signals/dedup."""
