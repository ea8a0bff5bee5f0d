"""What the preference page says, in each language it speaks.

English, and Spanish as the message templates have it. A language is a
`Words`: adding one is adding an entry to `WORDS` (a unit test checks that
every entry says everything, with the same placeholders).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Words:
    """Everything the page says, in one language."""

    lang: str
    channels: dict[str, str]
    no_preference: str
    form_title: str
    saved_title: str
    unavailable_title: str
    unavailable: str
    expired_title: str
    expired: str
    invalid_title: str
    invalid: str
    preferred_legend: str
    channels_legend: str
    categories_legend: str
    quiet_legend: str
    quiet_why: str
    quiet_from: str
    quiet_until: str
    required_why: str
    save: str
    not_saved: str
    saved_notice: str
    saved_preferred: str
    saved_channels: str
    none_of_them: str
    switched_off: str
    no_messages: str
    quiet_hours: str
    no_quiet_hours: str
    change_again: str


WORDS = {
    "en": Words(
        lang="en",
        channels={"sms": "Text message (SMS)", "email": "Email", "voice": "Phone call"},
        no_preference="No preference",
        form_title="How we contact you",
        saved_title="Your choices are saved",
        unavailable_title="Not available",
        unavailable="This page is not set up yet.",
        expired_title="This link has expired",
        expired="Links to this page work for a limited time. "
        "Use the link in the most recent message we sent you, or contact us.",
        invalid_title="This link is not valid",
        invalid="The link may have been changed or cut short. "
        "Use the link exactly as it appears in a message we sent you.",
        preferred_legend="Preferred way to reach you",
        channels_legend="Ways we may contact you",
        categories_legend="What we contact you about",
        quiet_legend="Quiet hours (your local time)",
        quiet_why="We will not contact you between these times. Leave both empty for none.",
        quiet_from="From",
        quiet_until="Until",
        required_why="Required by law: we must send these notices. "
        "Your channel choices above still apply; if none is left we send a letter.",
        save="Save my choices",
        not_saved="Not saved: {}",
        saved_notice="We saved your choices. They apply to the next message we send.",
        saved_preferred="Preferred: {}",
        saved_channels="We may contact you by: {}",
        none_of_them="none of the above",
        switched_off="Switched off: {}",
        no_messages="No messages about: {}",
        quiet_hours="Quiet hours: {} to {}",
        no_quiet_hours="Quiet hours: none",
        change_again="Change them again",
    ),
    "es": Words(
        lang="es",
        channels={
            "sms": "Mensaje de texto (SMS)",
            "email": "Correo electrónico",
            "voice": "Llamada telefónica",
        },
        no_preference="Sin preferencia",
        form_title="Cómo nos comunicamos con usted",
        saved_title="Guardamos sus preferencias",
        unavailable_title="No disponible",
        unavailable="Esta página aún no está configurada.",
        expired_title="Este enlace ha caducado",
        expired="Los enlaces a esta página funcionan por un tiempo limitado. Use el enlace "
        "del mensaje más reciente que le enviamos, o comuníquese con nosotros.",
        invalid_title="Este enlace no es válido",
        invalid="Puede que el enlace se haya modificado o cortado. "
        "Use el enlace tal como aparece en un mensaje que le enviamos.",
        preferred_legend="Forma preferida de contactarle",
        channels_legend="Formas en que podemos contactarle",
        categories_legend="Temas sobre los que le contactamos",
        quiet_legend="Horas de silencio (su hora local)",
        quiet_why="No le contactaremos entre estas horas. Deje ambos campos vacíos si no "
        "desea ninguna.",
        quiet_from="Desde",
        quiet_until="Hasta",
        required_why="Exigido por ley: debemos enviarle estos avisos. Sus preferencias de "
        "canal de arriba se siguen aplicando; si no queda ninguno, le enviamos una carta.",
        save="Guardar mis preferencias",
        not_saved="No se guardó: {}",
        saved_notice="Guardamos sus preferencias. Se aplican al próximo mensaje que le enviemos.",
        saved_preferred="Preferido: {}",
        saved_channels="Podemos contactarle por: {}",
        none_of_them="ninguno de los anteriores",
        switched_off="Desactivado: {}",
        no_messages="Sin mensajes sobre: {}",
        quiet_hours="Horas de silencio: de {} a {}",
        no_quiet_hours="Horas de silencio: ninguna",
        change_again="Cambiarlas de nuevo",
    ),
}
"""The page's languages: English, and Spanish as the templates have it."""


def words_for(*locales: str | None) -> Words:
    """The first of `locales` the page speaks (`es-MX` counts as `es`), else English."""
    for locale in locales:
        lang = (locale or "").replace("_", "-").split("-")[0].strip().lower()
        if lang in WORDS:
            return WORDS[lang]
    return WORDS["en"]
