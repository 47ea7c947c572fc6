import pytest
import torch

from adapterx.core.backbone import load_backbone, save_backbone
from adapterx.core.errors import AdapterxError
from adapterx.core.model import AdaptedModel


def test_tiny_backbone_is_deterministic_and_frozen(pristine_backbone):
    again = load_backbone("builtin:tiny-xlmr")
    assert again.fingerprint == pristine_backbone.fingerprint
    assert all(not p.requires_grad for p in again.model.parameters())
    assert load_backbone("builtin:tiny-xlmr@7").fingerprint != pristine_backbone.fingerprint


def test_fingerprint_sees_a_changed_weight(backbone):
    before = backbone.current_fingerprint()
    with torch.no_grad():
        backbone.model.encoder.layer[0].attention.self.query.weight[0, 0] += 1e-3
    assert backbone.current_fingerprint() != before


def test_translations_share_most_of_their_embedding(pristine_backbone):
    tok, emb = pristine_backbone.tokenizer, pristine_backbone.model.embeddings.word_embeddings.weight
    dog, hund, apple = (emb[tok.convert_tokens_to_ids(w)] for w in ("▁dog", "▁hund", "▁apple"))
    cos = torch.nn.functional.cosine_similarity
    assert cos(dog, hund, dim=0) > 0.4 > cos(dog, apple, dim=0)


def test_tokenizer_encodes_pairs_like_xlmr(pristine_backbone):
    tokens = pristine_backbone.tokenizer("the dog", "der hund").tokens()
    assert tokens == ["<s>", "▁the", "▁dog", "</s>", "</s>", "▁der", "▁hund", "</s>"]


def test_local_directory_round_trip(pristine_backbone, tmp_path):
    save_backbone(pristine_backbone, tmp_path / "bb")
    assert not list((tmp_path / "bb").glob("*.bin"))
    loaded = load_backbone(str(tmp_path / "bb"))
    assert loaded.fingerprint == pristine_backbone.fingerprint
    assert loaded.pretrained


def test_missing_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(AdapterxError, match="does not exist"):
        load_backbone(str(tmp_path / "nope"))


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_random_real_shape_says_so():
    bb = load_backbone("random:xlm-roberta-base", fingerprint=False)
    assert bb.model.config.hidden_size == 768 and bb.model.config.num_hidden_layers == 12
    assert not bb.pretrained and "RANDOM" in bb.description


def test_a_backbone_serves_one_model(backbone):
    AdaptedModel(backbone)
    with pytest.raises(AdapterxError, match="fresh_copy"):
        AdaptedModel(backbone)
