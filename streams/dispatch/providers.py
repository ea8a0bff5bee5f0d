"""Building the channels the settings ask for: the sandbox, Twilio, SendGrid."""

from __future__ import annotations

from channels.base import Channel
from channels.router import ChannelRouter
from channels.sandbox import SandboxChannel
from channels.sendgrid import SendGridConfig, SendGridEmail
from channels.twilio import TwilioConfig, TwilioSms, TwilioVoice
from schemas.types import Channel as ChannelName
from streams.runtime.settings import Settings


def build_channels(settings: Settings) -> ChannelRouter:
    """One router over sms, email and voice; the settings were checked for credentials."""
    sandbox = SandboxChannel(settings.outbox_path)
    routes: dict[ChannelName, Channel] = {"sms": sandbox, "email": sandbox, "voice": sandbox}
    if "twilio" in (settings.channel_sms, settings.channel_voice):
        config = twilio_config(settings)
        if settings.channel_sms == "twilio":
            routes["sms"] = TwilioSms(config)
        if settings.channel_voice == "twilio":
            routes["voice"] = TwilioVoice(config)
    if settings.channel_email == "sendgrid":
        routes["email"] = SendGridEmail(sendgrid_config(settings))
    return ChannelRouter(routes)


def twilio_config(settings: Settings) -> TwilioConfig:
    assert settings.twilio_account_sid and settings.twilio_auth_token
    return TwilioConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        sms_from=settings.twilio_sms_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        voice_from=settings.twilio_voice_from,
        status_callback_url=settings.status_callback_url(),
        machine_detection=settings.twilio_machine_detection,
        api_base=settings.twilio_api_base,
        timeout_s=settings.provider_timeout_s,
    )


def sendgrid_config(settings: Settings) -> SendGridConfig:
    assert settings.sendgrid_api_key and settings.sendgrid_from_email
    return SendGridConfig(
        api_key=settings.sendgrid_api_key.get_secret_value(),
        from_email=settings.sendgrid_from_email,
        from_name=settings.sendgrid_from_name,
        host=settings.sendgrid_host,
        unsubscribe_groups=settings.unsubscribe_groups(),
        unsubscribe_mailto=settings.sendgrid_unsubscribe_mailto,
        timeout_s=settings.provider_timeout_s,
    )
