"""The tokenizer factory: a deterministic byte-level BPE tokenizer for the built-in models.

The model factory (cluster/model_factory.py) writes it beside the weights. It is trained
with the `tokenizers` package on a fixed synthetic English-like corpus, so the same vocabulary
size always gives the same tokenizer, and every string round-trips (byte level, no `<unk>`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)  # ids 0, 1, 2, as in Llama

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def build_tokenizer(vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer trained on a fixed synthetic English-like corpus.

    Byte-level: every string round-trips and no input maps to `<unk>`.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_training_corpus(vocab_size), trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise RuntimeError(
            f"tokenizer training reached {tokenizer.get_vocab_size()} tokens, not {vocab_size}"
        )
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return tokenizer


_COMMON_WORDS_TEXT = """
the of and to in is was for that on as with by he at from his it an were are which this be
or has had not first one their its new after but who they have her she two been other when
there all during into school time may years more most only over city some world would where
later up such used many can state about national out known university united then made year
three what him work make people could also me find water long day did get come each part
great use good very how through back much before old right too any same tell want say small
every found still between name should home big give air line set own under read last never
us left end along while might next sound below saw something thought both few those always
show large often together asked house world going want school important until form food keep
children feet land side without boy once animal life enough took sometimes four head above
kind began almost live page got earth need far hand high year mother light country father
let night picture being study second soon story since white ever paper hard near sentence
better best across during today however sure knew try told young sun thing whole hear
example heard several change answer room sea against top turned learn point city play toward
five himself usually money seen car morning table remember river question fish area mark dog
horse birds problem complete room knew since ever piece told usually friends easy heard
order red door sure become top ship across today during short better best however low hours
black products happened whole measure remember early waves reached listen wind rock space
covered fast several hold himself toward five step morning passed vowel true hundred against
pattern numeral table north slowly money map farm pulled draw voice seen cold cried plan
notice south sing war ground fall king town unit figure certain field travel wood fire upon
done english road half ten fly gave box finally wait correct oh quickly person became shown
minutes strong verb stars front feel fact inches street decided contain course surface
produce building ocean class note nothing rest carefully scientists inside wheels stay green
known island week less machine base ago stood plane system behind ran round boat game force
brought understand warm common bring explain dry though language shape deep thousands yes
clear equation yet government filled heat full hot check object am rule among noun power
cannot able six size dark ball material special heavy fine pair circle include built request
server model token cache memory prefill decode adapter latency engine
"""
_COMMON_WORDS = tuple(_COMMON_WORDS_TEXT.split())

_ONSETS = ("", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v")
_ONSETS += ("w", "z", "th", "sh", "ch", "st", "tr", "pl", "gr", "br", "cl", "fl", "sp", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "y", "ai", "ea", "ou", "oo", "ie", "au")
_CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "x", "sh")
_PUNCTUATION = (".", ".", ".", "!", "?", ";")
_CORPUS_SEED = 20240601
_CORPUS_SENTENCES_PER_TOKEN = 4  # enough text for the trainer to reach the vocabulary size


def _training_corpus(vocab_size: int) -> Iterator[str]:
    """Sentences of common English words, made-up words, numbers and punctuation."""
    rng = random.Random(_CORPUS_SEED)
    for _ in range(_CORPUS_SENTENCES_PER_TOKEN * vocab_size):
        words = [_corpus_word(rng) for _ in range(rng.randint(4, 16))]
        words[0] = words[0].capitalize()
        if len(words) > 6 and rng.random() < 0.4:
            words[rng.randrange(2, len(words) - 2)] += ","
        yield " ".join(words) + rng.choice(_PUNCTUATION) + "\n"


def _corpus_word(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(_COMMON_WORDS)
    if roll < 0.95:
        syllables = rng.randint(1, 3)
        return "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
        )
    if roll < 0.98:
        return str(rng.randint(0, 2099))
    return rng.choice(_COMMON_WORDS).capitalize()
