"""The filters every report page takes from its query string (date range, platform, segment), and
the extra inputs of some pages (funnel steps, retention grain, the campaign to compare)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from profiles.models import Platform, Workspace
from segments.models import Segment

from ..models import Campaign
from .selectors import FUNNEL_SPLITS, MAX_STEPS, Filters

MAX_RANGE_DAYS = 400


class FiltersForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")
    platform = forms.ChoiceField(
        required=False, choices=[("", "All platforms"), *Platform.choices], label="App platform"
    )
    segment = forms.ModelChoiceField(queryset=Segment.objects.none(), required=False, empty_label="Everyone")

    def __init__(self, *args: Any, workspace: Workspace, default_start: date, default_end: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.default_start = default_start
        self.default_end = default_end
        # Shown in the inputs when the page is opened without filters.
        self.initial.setdefault("start", default_start)
        self.initial.setdefault("end", default_end)
        segment_field = self.fields["segment"]
        assert isinstance(segment_field, forms.ModelChoiceField)
        segment_field.queryset = Segment.objects.filter(workspace=workspace).order_by("name")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start = data.get("start") or self.default_start
        end = data.get("end") or self.default_end
        if start > end:
            self.add_error("end", "The end of the range is before its start.")
        elif (end - start).days > MAX_RANGE_DAYS:
            self.add_error("start", f"A range is at most {MAX_RANGE_DAYS} days long.")
        data["start"], data["end"] = start, end
        return data

    def filters(self) -> Filters:
        """The filters asked for, or the defaults where the form is invalid (its errors are shown)."""
        data = self.cleaned_data if self.is_valid() else {}
        return Filters(
            workspace=self.workspace,
            start=data.get("start") or self.default_start,
            end=data.get("end") or self.default_end,
            platform=data.get("platform") or "",
            segment=data.get("segment"),
        )


def last_days(days: int = 30) -> tuple[date, date]:
    today = timezone.now().date()
    return today - timedelta(days=days - 1), today


class CampaignChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.name)


class RetentionForm(FiltersForm):
    grain = forms.ChoiceField(choices=[("week", "Weekly"), ("month", "Monthly")], required=False, label="Cohorts")
    campaign = CampaignChoiceField(
        queryset=Campaign.objects.none(), required=False, empty_label="(none)", label="Compare a campaign"
    )
    period = forms.IntegerField(required=False, min_value=0, max_value=11, label="Compare period")

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, workspace=workspace, **kwargs)
        campaign_field = self.fields["campaign"]
        assert isinstance(campaign_field, forms.ModelChoiceField)
        campaign_field.queryset = Campaign.objects.filter(workspace=workspace).order_by("name")


class FunnelForm(FiltersForm):
    steps = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 28, "list": "event-names"}),
        label="Steps (one event per line)",
        help_text=f"Up to {MAX_STEPS} events, in order.",
    )
    window = forms.IntegerField(required=False, min_value=1, max_value=365, label="Within (days)")
    split = forms.ChoiceField(
        required=False,
        choices=[("none", "No split"), ("source", "Acquisition source"), ("campaign", "Campaign received")],
        label="Split by",
    )
    campaign = CampaignChoiceField(queryset=Campaign.objects.none(), required=False, empty_label="(choose)")

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, workspace=workspace, **kwargs)
        campaign_field = self.fields["campaign"]
        assert isinstance(campaign_field, forms.ModelChoiceField)
        campaign_field.queryset = Campaign.objects.filter(workspace=workspace).order_by("name")

    def clean_steps(self) -> list[str]:
        raw = self.cleaned_data.get("steps") or ""
        steps = [line.strip() for line in raw.splitlines() if line.strip()]
        if len(steps) > MAX_STEPS:
            raise forms.ValidationError(f"A funnel has at most {MAX_STEPS} steps.")
        return steps

    def clean_split(self) -> str:
        split = self.cleaned_data.get("split") or "none"
        return split if split in FUNNEL_SPLITS else "none"


class ChannelsForm(FiltersForm):
    onboarding = forms.CharField(
        required=False, label="Onboarding event", widget=forms.TextInput(attrs={"list": "event-names"})
    )
    conversion = forms.CharField(
        required=False, label="Conversion event", widget=forms.TextInput(attrs={"list": "event-names"})
    )
