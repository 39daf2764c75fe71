import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("demo", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="key",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(
                condition=models.Q(("key", ""), _negated=True),
                fields=("author", "key"),
                name="demo_message_author_key",
            ),
        ),
        migrations.AddField(
            model_name="feeditem",
            name="updated",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="announcement",
            name="expires",
            field=models.DateTimeField(
                blank=True,
                help_text="Shown to every visitor until then (empty: until deleted or dismissed).",
                null=True,
            ),
        ),
    ]
